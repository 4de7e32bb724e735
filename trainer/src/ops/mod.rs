//! Fast CPU operators plugged into Burn: each concept in its own file.

pub mod conv;
pub mod kernels;
