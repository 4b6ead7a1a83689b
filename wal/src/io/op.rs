//! The operations a caller hands the I/O layer: reads ([`ReadOp`]), writes
//! ([`WriteOp`]) and stages of ordered work ([`Stage`]).
//!
//! This file owns what an operation says (which file, where, which bytes).
//! It must never carry out an operation: the backends do, each the same way
//! for the same ops.

use super::file::IoFile;

/// One write of a batch: all of `data` at `offset` of `file`.
#[derive(Clone, Copy, Debug)]
pub struct WriteOp<'a> {
    /// The file to write.
    pub file: &'a IoFile,
    /// The byte offset in the file where `data` goes.
    pub offset: u64,
    /// The bytes to write, all of them.
    pub data: &'a [u8],
}

/// One stage of [`Io::write_stages`]: its writes, then the syncs of `sync`
/// (which normally names every file the writes touch, and may name more).
///
/// [`Io::write_stages`]: super::Io::write_stages
#[derive(Clone, Copy, Debug)]
pub struct Stage<'a> {
    /// The stage's writes, issued together.
    pub writes: &'a [WriteOp<'a>],
    /// The files made durable once every write completed.
    pub sync: &'a [&'a IoFile],
}

/// One read of a batch: fills all of `buf` from `offset` of `file`.
#[derive(Debug)]
pub struct ReadOp<'a> {
    /// The file to read.
    pub file: &'a IoFile,
    /// The byte offset in the file where reading starts.
    pub offset: u64,
    /// The buffer to fill, all of it.
    pub buf: &'a mut [u8],
}

/// The distinct files of a batch, in first-seen order: those a stage that
/// writes the batch syncs.
pub fn distinct_files<'a>(writes: &[WriteOp<'a>]) -> Vec<&'a IoFile> {
    let mut files: Vec<&IoFile> = Vec::new();
    for w in writes {
        if !files.iter().any(|f| f.same_file(w.file)) {
            files.push(w.file);
        }
    }
    files
}
