//! `storefront`: the microservices Prescale ships with and scales in demos and tests.
//!
//! A gateway and six services (authen, booking, order, product, profile, recommender)
//! that do real work per request, expose Prometheus metrics, and slow down when an
//! instance is overloaded, so that the collector records realistic features.
