//! `prescale-collector`: Prescale's memory.
//!
//! Every step it asks Prometheus for one row of the core feature schema per service
//! (the PromQL for each feature comes from a catalog in config), appends the rows to a
//! durable local spool, and flushes the spool as Parquet to an object store under a
//! Hive-style layout, so the trainer can learn from weeks of history and nothing is lost
//! while Prometheus or the store is down.
