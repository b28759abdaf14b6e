//! GoBGP (`gobgpd`), driven over its gRPC API: the paths netanom adds and reads back
//! ([`encode`]), and the client ([`client`]).
pub mod client;
pub mod encode;

pub use client::GoBgp;

#[cfg(test)]
mod tests;
