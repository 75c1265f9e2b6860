//! The research pipeline: paper actions (acquire, extract, clean, corpus
//! signals, terminology tags, judge normalisation, report) registered for the
//! prep, expensive and wrap machines in `machines/`.

pub mod acquire;
pub mod actions;
pub mod audit;
pub mod clean;
pub mod corpus;
pub mod judge;
pub mod pdf;
pub mod pdf_child;
pub mod report;
pub mod tags;
