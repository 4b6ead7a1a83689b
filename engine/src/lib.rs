//! Understudy's engine (placeholder until the engine issue).
