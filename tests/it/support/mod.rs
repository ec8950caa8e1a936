//! What the behaviour tests share. Behaviour modules import this, never
//! each other.
//!
//! - `db`: a fresh database per test, on SQLite or PostgreSQL
//! - `provider`: a scripted provider and a processor on a manual clock
//! - `app`: the application on port 0 (`Application::build`)
//! - `cli`: the `herald` binary
//! - `fakes`: loopback Twilio, SendGrid and custom-provider servers
//! - `smtp`: a real SMTP server
//! - `wait`: waiting for what happens elsewhere

#![allow(dead_code, unused_imports)]

#[macro_use]
mod macros;
mod app;
mod cli;
mod db;
pub mod fakes;
mod messages;
mod provider;
mod smtp;
mod wait;

pub use app::*;
pub use cli::*;
pub use db::*;
pub use fakes::*;
pub use messages::*;
pub use provider::*;
pub use smtp::*;
pub use wait::*;
