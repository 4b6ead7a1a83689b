//! GlueSQL's test suite against [`UnderstudyStorage`], each case on a
//! fresh Understudy database in a directory of its own.

use gluesql_core::prelude::Glue;
use gluesql_test_suite::*;
use tempfile::TempDir;
use understudy_sql::UnderstudyStorage;

struct UnderstudyTester {
    // Dropped before the directory it lives in.
    glue: Glue<UnderstudyStorage>,
    _dir: TempDir,
}

impl Tester<UnderstudyStorage> for UnderstudyTester {
    fn new(_namespace: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let storage = UnderstudyStorage::open(dir.path()).expect("a fresh database opens");
        UnderstudyTester {
            glue: Glue::new(storage),
            _dir: dir,
        }
    }

    fn get_glue(&mut self) -> &mut Glue<UnderstudyStorage> {
        &mut self.glue
    }
}

generate_store_tests!(test, UnderstudyTester);
generate_transaction_tests!(test, UnderstudyTester);
generate_alter_table_tests!(test, UnderstudyTester);
generate_transaction_alter_table_tests!(test, UnderstudyTester);
generate_metadata_table_tests!(test, UnderstudyTester);
generate_custom_function_tests!(test, UnderstudyTester);
generate_index_tests!(test, UnderstudyTester);
generate_alter_table_index_tests!(test, UnderstudyTester);
generate_transaction_index_tests!(test, UnderstudyTester);
generate_metadata_index_tests!(test, UnderstudyTester);
