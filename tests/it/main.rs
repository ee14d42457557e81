//! adps integration tests: one binary, a module per theme.

mod bicubic;
mod common;
mod evaluate;
mod input;
mod lpips;
mod operator_files;
mod parity;
mod pipeline;
mod python;
mod quality;
mod report;
mod resume;
mod s3;
mod s3_restart;
mod safety;
mod slurm;
mod worked_example;
