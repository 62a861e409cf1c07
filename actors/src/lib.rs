//! temporary
#![deny(clippy::unwrap_used)]
#![warn(clippy::expect_used)]
pub mod error;
pub mod format;
