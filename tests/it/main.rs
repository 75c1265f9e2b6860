//! The integration tests, in one test binary: each file next to this one
//! is a module, so the whole library and its dependencies are linked once
//! rather than once per file. Shared helpers are in `support/`.
//!
//! Adding a test file: put it in tests/it/, add `mod <name>;` below under
//! its theme, and use `crate::support::…` for paths, the scripted agent and
//! the runner directory on the mock provider. A test that changes
//! process-wide state (environment variables other tests' children read,
//! resource limits of the process, its peak RSS as a measure) does not
//! belong here: it gets its own file directly under tests/, as
//! hostile_edges.rs, hostile_pdf.rs and systemd_notify.rs do.

mod support;

// The FlatMachines runtime: spec conformance, checks, retries, resume.
mod compat_corpus;
mod compat_profiles;
mod conformance;
mod hostile_spec;
mod prop_spec;
mod python_hooks;
mod resume;
mod retry;

// The store, durability and the durable CLI.
mod crash;
mod durable_cli;
mod multiprocess;
mod store;

// The runner: configuration, the daemon, scheduling, operator surface.
mod breaker;
mod budget_money;
mod cli;
mod config_example;
mod daemon;
mod dashboard;
mod dashboard_browser;
mod hooks_cli;
mod hostile_cfg;
mod hostile_ops;
mod hostile_pause;
mod hostile_sched;
mod hostile_shell;
mod ops;
mod postgres;
mod prop_config;

// LLM calls against the mock provider.
mod hostile_provider;
mod llm;
mod mock_llm;
mod prices;
mod spend;
mod tpm;

// The paper pipeline: acquisition, ingest, PDFs, text, reports.
mod acquire;
mod corpus;
mod extract_reportlab;
mod extract_synth;
mod ingest;
mod pdf;
mod synth;
mod text_pipeline;

// The tooling commands (`runner demo`, `runner bench`, `runner mock-llm`
// as a child process): only in a runner built with the `tooling` feature.
#[cfg(feature = "tooling")]
mod bench_pipeline;
#[cfg(feature = "tooling")]
mod demo;
#[cfg(feature = "tooling")]
mod extract_bench;
#[cfg(feature = "tooling")]
mod pipeline_e2e;
