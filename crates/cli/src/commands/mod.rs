//! One module per `skein` command.

pub(crate) mod validate;
