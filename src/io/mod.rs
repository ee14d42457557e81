//! The edges: object stores, Parquet tables and image codecs. Nothing here knows about
//! the sampler or the pipeline's stages.

pub mod image;
pub mod layout;
pub mod operator_file;
pub mod parquet_in;
pub mod parquet_out;
pub mod store;
