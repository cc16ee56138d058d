//! `prescale-testkit`: real parts for tests, never mocks.
//!
//! - [`s3`]: an S3 protocol server (`s3s-fs`) served in-process on a loopback port, with
//!   credentials, that a test can stop and restart on the same port to play an outage.
//! - [`traces`]: where the shared real traces are, and a loud message when they are not.

pub mod s3;
pub mod traces;
