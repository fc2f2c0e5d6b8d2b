//! `pushy test`: test files, each in a fresh sandbox session, run in
//! parallel over one or more targets.
//!
//! - `discover`: finds `test_*.py` / `*_test.py` files.
//! - `run`: workers, targets, retries when a target dies.
//! - `file`: one file in one session, its tests one call each.
//! - `report`: per-test results, the summary line and JUnit XML.
//! - `bytecode`: the bytecode cache of a pytest run and its writer.

mod bytecode;
mod discover;
mod file;
mod report;
mod run;

pub use discover::discover;
pub use report::{Outcome, Summary, TestResult, junit_xml};
pub use run::{BYTECODE_MOUNT, FileReport, PytestRun, TestOptions, run_suite};
