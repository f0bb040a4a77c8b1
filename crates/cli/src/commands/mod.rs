//! One module per `skein` command.

pub(crate) mod bench;
pub(crate) mod run;
pub(crate) mod test;
pub(crate) mod validate;
