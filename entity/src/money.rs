//! Money: a positive integer amount in the currency's minor unit, and ISO 4217 currencies.
//!
//! Amounts never touch floating point. The exponent table is what a provider that counts in
//! major units (Moneroo) needs to convert, and what rejects a currency we do not know.

use std::fmt;

/// An ISO 4217 currency we accept, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

/// ISO 4217 active codes with their exponents (the standard's "minor unit" column).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

impl Currency {
    /// Parses a three-letter ISO 4217 code, case-insensitively.
    pub fn parse(code: &str) -> Option<Currency> {
        let upper = code.to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|&(code, exponent)| Currency { code, exponent })
    }

    /// Every code accepted, upper-case (as stored and returned).
    pub fn codes() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(code, _)| *code)
    }

    /// The upper-case code, as stored and returned.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Digits after the decimal point (USD 2, XAF 0, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl Currency {
    /// ISO 4217's "no currency", for a stored code this table does not know (a row written
    /// outside the gateway): every write parses its currency, so it should never be seen, and
    /// reading it is logged as an error rather than failing the merchant's whole list.
    pub const UNKNOWN: Currency = Currency {
        code: "XXX",
        exponent: 0,
    };

    /// A currency read back from storage.
    pub fn stored(code: &str) -> Currency {
        Currency::parse(code).unwrap_or_else(|| {
            tracing::error!(code, "a stored currency is not one this gateway accepts");
            Currency::UNKNOWN
        })
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown currency {code:?}")))
    }
}

/// The currency in the merchant's objects: an upper-case ISO 4217 code, listed in the spec.
#[cfg(feature = "openapi")]
mod openapi_type {
    use std::borrow::Cow;

    use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
    use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
    use serde_json::Value;

    use super::Currency;

    impl Type for Currency {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn name() -> Cow<'static, str> {
            "Currency".into()
        }

        fn schema_ref() -> MetaSchemaRef {
            let mut schema = MetaSchema::new("string");
            schema.description = Some("An ISO 4217 code, upper-case.");
            schema.enum_items = Currency::codes().map(|c| Value::String(c.into())).collect();
            schema.example = Some(Value::String("EUR".into()));
            MetaSchemaRef::Inline(Box::new(schema))
        }

        fn as_raw_value(&self) -> Option<&Self> {
            Some(self)
        }

        fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
            Box::new(self.as_raw_value().into_iter())
        }
    }

    impl ParseFromJSON for Currency {
        fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
            match value {
                Some(Value::String(code)) => Currency::parse(&code)
                    .ok_or_else(|| ParseError::custom(format!("unknown currency {code:?}"))),
                other => Err(ParseError::expected_type(other.unwrap_or_default())),
            }
        }
    }

    impl ToJSON for Currency {
        fn to_json(&self) -> Option<Value> {
            Some(Value::String(self.code.into()))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

/// A strictly positive amount in minor units. Larger than any real payment, small enough that
/// sums of refunds and totals never overflow an `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    pub const MAX: i64 = 99_999_999_999_999;

    pub fn new(minor_units: i64) -> Option<Amount> {
        (1..=Self::MAX)
            .contains(&minor_units)
            .then_some(Amount(minor_units))
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }
}

/// Minor units → whole major units (for providers that take no fraction, like Moneroo);
/// `None` when the amount has a fraction.
pub fn to_major_units(amount: i64, currency: Currency) -> Option<i64> {
    let factor = 10i64.checked_pow(u32::from(currency.exponent()))?;
    (amount % factor == 0).then_some(amount / factor)
}

/// How a currency is written for a customer: a symbol before the amount (`€49.99`), or a name
/// after it (`5 000 FCFA`), and the thousands separator its readers expect.
fn display_style(code: &str) -> (Option<&'static str>, Option<&'static str>, char) {
    const NBSP: char = '\u{a0}';
    match code {
        "EUR" => (Some("€"), None, ','),
        "USD" => (Some("$"), None, ','),
        "GBP" => (Some("£"), None, ','),
        "JPY" => (Some("¥"), None, ','),
        "INR" => (Some("₹"), None, ','),
        "NGN" => (Some("₦"), None, ','),
        // The CFA francs, Central (XAF) and West African (XOF), are written "5 000 FCFA".
        "XAF" | "XOF" => (None, Some("FCFA"), NBSP),
        _ => (None, None, NBSP),
    }
}

/// An amount in minor units as a customer reads it: `€49.99`, `$1,250.00`, `5 000 FCFA`,
/// `12.500 KWD` (a no-break space where a space separates, so it never wraps). Integer
/// arithmetic only.
pub fn format_amount(minor_units: i64, currency: Currency) -> String {
    let exponent = u32::from(currency.exponent());
    let factor = 10i64.pow(exponent);
    let sign = if minor_units < 0 { "-" } else { "" };
    let abs = minor_units.unsigned_abs();
    let (whole, fraction) = (abs / factor as u64, abs % factor as u64);
    let (symbol, suffix, separator) = display_style(currency.code());
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(separator);
        }
        grouped.push(c);
    }
    if exponent > 0 {
        grouped.push('.');
        grouped.push_str(&format!("{fraction:0width$}", width = exponent as usize));
    }
    match (symbol, suffix) {
        (Some(symbol), _) => format!("{sign}{symbol}{grouped}"),
        (None, Some(suffix)) => format!("{sign}{grouped}\u{a0}{suffix}"),
        (None, None) => format!("{sign}{grouped}\u{a0}{}", currency.code()),
    }
}

/// [`format_amount`] for a currency stored as text; a code we do not know (none is stored, but
/// a page must not fail on one) is written as the raw minor units and the code.
pub fn format_stored_amount(minor_units: i64, currency_code: &str) -> String {
    match Currency::parse(currency_code) {
        Some(currency) => format_amount(minor_units, currency),
        None => format!("{minor_units} {currency_code}"),
    }
}

/// An amount as a person types it in major units (`10`, `10.5`, `10.50`; `5000` for a currency
/// without minor units) → minor units. Digits and at most one dot, no more decimals than the
/// currency has, and at least one minor unit; anything else is refused with the reason.
pub fn parse_major_units(text: &str, currency: Currency) -> Result<i64, String> {
    let exponent = usize::from(currency.exponent());
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if text.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || (whole.is_empty() && fraction.is_empty())
    {
        // An example in the currency's own shape: 10.50, 10, 10.500.
        let unit = 10i64.pow(u32::from(currency.exponent()));
        let example = plain_major_units(10 * unit + unit / 2, currency);
        return Err(format!(
            "write the amount in {} as digits and a dot, like {example}",
            currency.code()
        ));
    }
    if fraction.len() > exponent {
        return Err(match exponent {
            0 => format!(
                "{} has no minor units: write a whole number",
                currency.code()
            ),
            n => format!("{} has {n} decimals at most", currency.code()),
        });
    }
    let padded = format!("{whole}{fraction:0<exponent$}");
    let minor: i64 = padded
        .trim_start_matches('0')
        .parse()
        .or_else(|_| {
            if padded.chars().all(|c| c == '0') {
                Ok(0)
            } else {
                Err(())
            }
        })
        .map_err(|_| "the amount is too large".to_string())?;
    Amount::new(minor).map(Amount::minor_units).ok_or_else(|| {
        "the amount must be more than zero and less than a hundred trillion".to_string()
    })
}

/// Minor units written plainly in major units for a form field (`10.50`, `5000`): no symbol,
/// no separators, so [`parse_major_units`] reads it back.
pub fn plain_major_units(minor_units: i64, currency: Currency) -> String {
    let exponent = u32::from(currency.exponent());
    let factor = 10i64.pow(exponent);
    match exponent {
        0 => minor_units.to_string(),
        _ => format!(
            "{}.{:0width$}",
            minor_units / factor,
            (minor_units % factor).abs(),
            width = exponent as usize
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_typed_in_major_units_become_minor_units_or_a_reason() {
        let c = |code| Currency::parse(code).expect("known");
        assert_eq!(parse_major_units("10.50", c("EUR")), Ok(1050));
        assert_eq!(parse_major_units(" 10.5 ", c("EUR")), Ok(1050));
        assert_eq!(parse_major_units("10", c("EUR")), Ok(1000));
        assert_eq!(parse_major_units(".05", c("USD")), Ok(5));
        assert_eq!(parse_major_units("5000", c("XAF")), Ok(5000));
        assert_eq!(parse_major_units("1.250", c("KWD")), Ok(1250));
        for bad in ["", "-5", "10,50", "1e3", "10.505", "0", "0.00", "abc", "."] {
            assert!(
                parse_major_units(bad, c("EUR")).is_err(),
                "{bad:?} is refused"
            );
        }
        assert!(parse_major_units("50.5", c("XAF")).is_err_and(|e| e.contains("no minor units")));
        assert!(parse_major_units("99999999999999999999", c("EUR")).is_err());
        for (minor, code) in [(1050, "EUR"), (5, "USD"), (5000, "XAF"), (1250, "KWD")] {
            let text = plain_major_units(minor, c(code));
            assert_eq!(parse_major_units(&text, c(code)), Ok(minor), "{text}");
        }
        assert_eq!(plain_major_units(1050, c("EUR")), "10.50");
    }

    #[test]
    fn amounts_are_written_as_customers_read_them() {
        let c = |code| Currency::parse(code).expect("known");
        assert_eq!(format_amount(4999, c("EUR")), "€49.99");
        assert_eq!(format_amount(125_000, c("usd")), "$1,250.00");
        assert_eq!(format_amount(5, c("GBP")), "£0.05");
        assert_eq!(format_amount(5000, c("XAF")), "5\u{a0}000\u{a0}FCFA");
        assert_eq!(
            format_amount(1_234_567, c("XOF")),
            "1\u{a0}234\u{a0}567\u{a0}FCFA"
        );
        assert_eq!(format_amount(12_500, c("KWD")), "12.500\u{a0}KWD");
        assert_eq!(format_amount(999, c("JPY")), "¥999");
    }

    #[test]
    fn currencies_parse_with_their_exponents() {
        assert_eq!(Currency::parse("usd").map(|c| c.exponent()), Some(2));
        assert_eq!(Currency::parse("XAF").map(|c| c.exponent()), Some(0));
        assert_eq!(Currency::parse("KWD").map(|c| c.code()), Some("KWD"));
        assert_eq!(Currency::parse("ZZZ"), None);
        assert_eq!(Currency::parse("US"), None);
    }

    #[test]
    fn a_currency_is_its_upper_case_code_on_the_wire_and_an_unknown_one_is_refused() {
        let eur: Currency = serde_json::from_str("\"eur\"").expect("known");
        assert_eq!(serde_json::to_string(&eur).expect("json"), "\"EUR\"");
        assert!(serde_json::from_str::<Currency>("\"ZZZ\"").is_err());
        assert_eq!(Currency::stored("XAF").exponent(), 0);
        assert_eq!(Currency::stored("ZZZ"), Currency::UNKNOWN);
        assert!(
            Currency::parse(Currency::UNKNOWN.code()).is_none(),
            "XXX is never accepted"
        );
    }

    #[test]
    fn amounts_are_strictly_positive_and_bounded() {
        assert!(Amount::new(0).is_none());
        assert!(Amount::new(-5).is_none());
        assert!(Amount::new(Amount::MAX + 1).is_none());
        assert_eq!(Amount::new(2000).map(Amount::minor_units), Some(2000));
    }
}
