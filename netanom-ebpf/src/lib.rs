//! Library target so the agent can depend on this crate at build time (aya-build needs that
//! for rebuild tracking); the program itself is the `netanom` binary.
#![no_std]
