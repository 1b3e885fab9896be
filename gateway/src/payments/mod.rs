//! Payments: the objects merchants see, the checks a request passes, the test cards, the
//! service that creates and moves payments (one event per change, in the same transaction),
//! and refunds.

pub mod cards;
pub mod figures;
pub mod inbound;
pub mod objects;
pub mod qr;
pub mod refunds;
pub mod service;
pub mod validation;
