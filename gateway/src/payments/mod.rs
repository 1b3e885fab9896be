//! Payments: the objects merchants see, the checks a request passes, the test cards, the
//! service that creates and moves payments (one event per change, in the same transaction),
//! refunds, and the search people use to find them.

pub mod cards;
pub mod figures;
pub mod inbound;
pub mod objects;
pub mod qr;
pub mod refunds;
pub mod search;
pub mod service;
pub mod validation;
