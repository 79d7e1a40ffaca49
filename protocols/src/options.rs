//! Named design options of a protocol configuration (`--option name=value`,
//! `dst compare --variant protocol:name=value`). Every protocol config lists its options
//! with their values (so a run can record and print them) and sets one by name; a name that
//! does not exist, or a value that does not parse, is an error, never silently ignored.

use std::str::FromStr;

use dst_sim::MS;

/// A configuration's options: name and current value, in a fixed order.
pub type OptionList = Vec<(&'static str, String)>;

/// A configuration with named options.
pub trait Configurable {
    /// Every option with its current value.
    fn options(&self) -> OptionList;
    /// Sets one option; errors name the option and what was wrong.
    fn set_option(&mut self, name: &str, value: &str) -> Result<(), String>;

    /// Applies `name=value` pairs in order.
    fn apply_options(&mut self, options: &[(String, String)]) -> Result<(), String> {
        options
            .iter()
            .try_for_each(|(name, value)| self.set_option(name, value))
    }
}

/// Parses `true`/`false` (also `on`/`off`, `1`/`0`).
pub fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(format!("option {name}: '{value}' is not true or false")),
    }
}

/// Parses a number.
pub fn parse_number<T: FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("option {name}: '{value}' is not a number"))
}

/// Parses milliseconds into nanoseconds.
pub fn parse_ms(name: &str, value: &str) -> Result<u64, String> {
    let ms: u64 = parse_number(name, value)?;
    ms.checked_mul(MS)
        .ok_or_else(|| format!("option {name}: {ms} ms is too long"))
}

/// The error for an option a protocol does not have.
pub fn unknown_option(protocol: &str, name: &str, known: &OptionList) -> String {
    let names: Vec<&str> = known.iter().map(|(name, _)| *name).collect();
    format!(
        "{protocol} has no option '{name}' (options: {})",
        names.join(", ")
    )
}

/// Splits `name=value`.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not name=value"))?;
    if name.trim().is_empty() {
        return Err(format!("'{text}' has no option name"));
    }
    Ok((name.trim().to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_fail_with_the_option_named() {
        assert_eq!(parse_bool("pre_vote", "off"), Ok(false));
        assert!(parse_bool("pre_vote", "maybe")
            .unwrap_err()
            .contains("pre_vote"));
        assert_eq!(parse_ms("timeout_ms", "5"), Ok(5 * MS));
        assert!(parse_ms("timeout_ms", "99999999999999999").is_err());
        assert_eq!(
            parse_assignment(" batch = 8 "),
            Ok(("batch".into(), "8".into()))
        );
        assert!(parse_assignment("batch").is_err());
        assert!(parse_assignment("=8").is_err());
    }
}
