//! The run: configuration, the validated plan, and the one place that wires the stages
//! together.

pub mod config;
pub mod plan;
pub mod topology;
