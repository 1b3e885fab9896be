//! The QR code of a payment's checkout URL: what it holds, and whether it can.

use qrcode::{EcLevel, QrCode};

/// The code of `data`. Medium error correction: survives a smudged screen, stays small for a
/// URL.
pub fn code(data: &str) -> Result<QrCode, qrcode::types::QrError> {
    QrCode::with_error_correction_level(data, EcLevel::M)
}

/// Whether a QR code can hold `url` (a checkout URL with a 2,000-character `return_url` may
/// not): a payment whose URL does not fit carries no `qr_code_url`.
pub fn fits(url: &str) -> bool {
    // Encoding the data is the whole capacity check; building the code (masks and their
    // penalty scores) would cost a quarter of a payment creation's CPU for nothing.
    qrcode::bits::encode_auto(url.as_bytes(), EcLevel::M).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheap check answers as building the code would, on both sides of the limit.
    #[test]
    fn fits_agrees_with_building_the_code() {
        for len in [10, 500, 2_000, 2_300, 2_331, 2_332, 2_400, 3_000, 4_000] {
            let url = format!("https://pay.example/c/{}", "aZ9-".repeat(len / 4));
            assert_eq!(fits(&url), code(&url).is_ok(), "length {}", url.len());
        }
        assert!(fits("https://pay.example/c/pay_01"));
        assert!(!fits(&format!(
            "https://pay.example/?r={}",
            "x".repeat(4_000)
        )));
    }
}
