//! `prescale-scaler`: from forecasts to pods.
//!
//! The replica policy as pure functions, the `simulate` benchmark that replays a trace
//! against the reactive HPA and a perfect oracle, and a Kubernetes backend that applies
//! (or, in shadow mode, only reports) decisions through the scale subresource.
