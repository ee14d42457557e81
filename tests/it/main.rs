//! adps integration tests: one binary, a module per theme.

mod common;
mod pipeline;
mod python;
mod resume;
mod s3;
