//! `prescale-predictor`: what KEDA talks to in production.
//!
//! Each step it reads the recent window of every service from Prometheus, forecasts the
//! next ten minutes with the latest model, applies the scaler's policy, and serves the
//! resulting replica count over KEDA's external-scaler gRPC API, an HTTP JSON API and
//! Prometheus metrics, with fallbacks when the model or the data is missing.
