//! Numbers into text without `format!`: storage keys and workload values are built on every
//! command, and the formatting machinery cost more than the writes they name.

/// Appends `number` in `radix` (2 to 16, lower-case digits), zero-padded to `width` digits:
/// `format!("{number:0width$}")` for radix 10, `{number:0width$x}` for radix 16.
pub fn push_digits(text: &mut String, mut number: u64, radix: u64, width: usize) {
    assert!((2..=16).contains(&radix), "radix {radix} out of 2..=16");
    let mut digits = [b'0'; 64];
    let mut at = digits.len();
    while number > 0 || at == digits.len() {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(number % radix) as usize];
        number /= radix;
    }
    let start = at.min(digits.len().saturating_sub(width));
    text.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_format() {
        for number in [
            0u64,
            7,
            9,
            10,
            99,
            100,
            12_345,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let pushed = |radix, width| {
                let mut text = String::from("k");
                push_digits(&mut text, number, radix, width);
                text
            };
            assert_eq!(pushed(10, 1), format!("k{number}"));
            assert_eq!(pushed(10, 20), format!("k{number:020}"));
            assert_eq!(pushed(16, 16), format!("k{number:016x}"));
            assert_eq!(pushed(2, 1), format!("k{number:b}"));
        }
    }
}
