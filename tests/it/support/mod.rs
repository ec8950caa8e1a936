//! What the behaviour tests share. Behaviour modules import this, never
//! each other.
//!
//! - `db`: a fresh database per test, on SQLite or PostgreSQL
//! - `provider`: a scripted provider and a processor on a manual clock
//! - `app`: the application on port 0 (`Application::build`)
//! - `browser`: headless Chromium through ChromeDriver
//! - `cli`: the `herald` binary
//! - `dns`: a loopback DNS server (TXT records)
//! - `fakes`: loopback Twilio, SendGrid and custom-provider servers
//! - `raw`: raw TCP clients (silent, slow, half-sent requests)
//! - `smtp`: a real SMTP server
//! - `wait`: waiting for what happens elsewhere

#![allow(dead_code, unused_imports)]

#[macro_use]
mod macros;
mod app;
mod browser;
mod cli;
mod db;
mod dns;
pub(crate) mod fakes;
mod messages;
mod provider;
mod raw;
mod smtp;
mod wait;

pub(crate) use app::*;
pub(crate) use browser::*;
pub(crate) use cli::*;
pub(crate) use db::*;
pub(crate) use dns::*;
pub(crate) use fakes::*;
pub(crate) use messages::*;
pub(crate) use provider::*;
pub(crate) use raw::*;
pub(crate) use smtp::*;
pub(crate) use wait::*;
