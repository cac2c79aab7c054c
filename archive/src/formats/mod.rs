//! One module per container format.

pub(crate) mod sevenz;
pub(crate) mod stream;
pub(crate) mod tar;
pub(crate) mod zip;
