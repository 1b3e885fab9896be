//! Test cards for the simulated provider: Luhn, expiry and CVC checks, the brand, and the
//! outcome each of Stripe's published test numbers stands for. A card number never leaves
//! this module: only its summary (brand, last4, expiry) is kept.

use chrono::Datelike;

use super::objects::CardSummary;

/// Stripe's published test numbers that succeed (Visa, Visa debit, Mastercard 2-series and
/// 5-series, debit and prepaid, American Express, Discover, Diners, JCB, UnionPay).
const TEST_CARDS_THAT_SUCCEED: &[&str] = &[
    "4242424242424242",
    "4000056655665556",
    "5555555555554444",
    "2223003122003222",
    "5200828282828210",
    "5105105105105100",
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "6011000990139424",
    "3056930009020004",
    "36227206271667",
    "3566002020360505",
    "6200000000000005",
];
use crate::core::error::ValidationError;

/// How a test card behaves (Stripe's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    Succeeds,
    Declined(&'static str, &'static str),
}

/// A card that passed the checks. Only its summary survives this type.
pub struct Card {
    pub summary: CardSummary,
    pub outcome: CardOutcome,
}

impl Card {
    /// Checks a card as sent (number, expiry, CVC). Only its summary survives this.
    pub fn parse(
        number: &str,
        exp_month: u32,
        exp_year: u32,
        cvc: &str,
    ) -> Result<Card, ValidationError> {
        let number: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(12..=19).contains(&number.len())
            || !number.bytes().all(|b| b.is_ascii_digit())
            || !luhn(&number)
        {
            return Err(ValidationError::new(
                "payment_method[card][number]",
                "invalid_number",
                "The card number is not a valid card number.",
            ));
        }
        let now = chrono::Utc::now();
        let (year, month) = (now.year() as u32, now.month());
        if !(1..=12).contains(&exp_month) {
            return Err(ValidationError::new(
                "payment_method[card][exp_month]",
                "invalid_expiry_month",
                "The expiry month must be 1 to 12.",
            ));
        }
        if exp_year > year + 50 {
            return Err(ValidationError::new(
                "payment_method[card][exp_year]",
                "invalid_expiry_year",
                "The expiry year is too far in the future.",
            ));
        }
        if exp_year < year || (exp_year == year && exp_month < month) {
            return Err(ValidationError::new(
                "payment_method[card][exp_year]",
                "expired_card",
                "The card has expired.",
            ));
        }
        let brand = brand(&number);
        let cvc_len = if brand == "amex" { 4 } else { 3 };
        if cvc.len() != cvc_len || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValidationError::new(
                "payment_method[card][cvc]",
                "invalid_cvc",
                "The card's security code is invalid.",
            ));
        }
        let outcome = match number.as_str() {
            "4000000000000002" => CardOutcome::Declined("card_declined", "Your card was declined."),
            "4000000000009995" => {
                CardOutcome::Declined("insufficient_funds", "Your card has insufficient funds.")
            }
            n if TEST_CARDS_THAT_SUCCEED.contains(&n) => CardOutcome::Succeeds,
            // A card that is not a published test number is, or could be, a real one: it has
            // no business in a sandbox, and none is ever charged here.
            _ => {
                return Err(ValidationError::new(
                    "payment_method[card][number]",
                    "card_not_a_test_card",
                    "Test mode takes only the published test card numbers, such as 4242 4242 4242 4242.",
                ));
            }
        };
        Ok(Card {
            summary: CardSummary {
                brand: brand.to_string(),
                last4: number[number.len() - 4..].to_string(),
                exp_month,
                exp_year,
            },
            outcome,
        })
    }
}

fn luhn(number: &str) -> bool {
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn brand(number: &str) -> &'static str {
    let two: u32 = number[..2].parse().unwrap_or(0);
    let four: u32 = number[..4].parse().unwrap_or(0);
    match () {
        _ if number.starts_with('4') => "visa",
        _ if (51..=55).contains(&two) || (2221..=2720).contains(&four) => "mastercard",
        _ if two == 34 || two == 37 => "amex",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, exp_year: u32, cvc: &str) -> Result<Card, ValidationError> {
        Card::parse(number, 12, exp_year, cvc)
    }

    #[test]
    fn test_cards_map_to_their_outcomes() {
        let y = chrono::Utc::now().year() as u32 + 2;
        let ok = (card("4242 4242 4242 4242", y, "123")).ok().unwrap();
        assert_eq!(ok.outcome, CardOutcome::Succeeds);
        assert_eq!(
            (ok.summary.brand.as_str(), ok.summary.last4.as_str()),
            ("visa", "4242")
        );
        let declined = (card("4000000000000002", y, "123")).ok().unwrap();
        assert_eq!(
            declined.outcome,
            CardOutcome::Declined("card_declined", "Your card was declined.")
        );
        let funds = (card("4000000000009995", y, "123")).ok().unwrap();
        assert!(matches!(
            funds.outcome,
            CardOutcome::Declined("insufficient_funds", _)
        ));
    }

    #[test]
    fn bad_cards_are_refused() {
        let y = chrono::Utc::now().year() as u32 + 2;
        assert!((card("4242424242424241", y, "123")).is_err(), "Luhn");
        assert!((card("4242424242424242", 2020, "123")).is_err(), "expired");
        assert!((card("4242424242424242", y, "12")).is_err(), "cvc");
        assert!((card("4242abcd42424242", y, "123")).is_err(), "digits");
    }

    #[test]
    fn only_published_test_numbers_are_taken() {
        let y = chrono::Utc::now().year() as u32 + 2;
        // Luhn-valid, unexpired, but not a test number: refused.
        let err = card("4111111111111111", y, "123").err().unwrap();
        assert_eq!(err.code, "card_not_a_test_card");
        assert!(card("5555555555554444", y, "123").is_ok());
        assert!(card("378282246310005", y, "1234").is_ok());
    }
}
