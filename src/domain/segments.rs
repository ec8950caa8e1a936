//! How many SMS segments a text takes (what carriers bill): GSM-7 text
//! takes 160 characters in one segment and 153 per segment when split;
//! anything else is sent as UCS-2, 70 and 67 (counted in UTF-16 units).
//! Characters of GSM-7's extension table (`^{}\[~]|€`) take two.

/// GSM 03.38 basic character set.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (each takes an escape and the character).
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Segments of an SMS with this text (0 for an empty text).
pub fn sms_segments(text: &str) -> u32 {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in text.chars() {
        if GSM7_BASIC.contains(c) {
            septets += 1;
        } else if GSM7_EXTENSION.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (len, single, multi) = if gsm {
        (septets, 160, 153)
    } else {
        (text.encode_utf16().count(), 70, 67)
    };
    match len {
        0 => 0,
        n if n <= single => 1,
        n => n.div_ceil(multi) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_and_unicode_texts() {
        assert_eq!(sms_segments(""), 0);
        assert_eq!(sms_segments("Your order is ready"), 1);
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"a".repeat(306)), 2);
        assert_eq!(sms_segments(&"a".repeat(307)), 3);
        // Extension characters count twice.
        assert_eq!(sms_segments(&"€".repeat(80)), 1);
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
        // One non-GSM character makes the whole text UCS-2.
        assert_eq!(sms_segments(&format!("{}ç", "a".repeat(69))), 1);
        assert_eq!(sms_segments(&format!("{}ç", "a".repeat(70))), 2);
        assert_eq!(sms_segments("Pedido pronto 🚀"), 1);
        assert_eq!(sms_segments(&"🚀".repeat(35)), 1, "35 emoji are 70 UTF-16 units");
        assert_eq!(sms_segments(&"🚀".repeat(36)), 2);
    }
}
