//! Small text helpers for the request path: numbers written as decimal digits without the
//! `core::fmt` machinery (head encoders, access-log lines), on the stack.

/// `n` in decimal, written at the end of `buf`; the digits are returned.
#[inline]
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_matches_display() {
        for n in [0u64, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(super::decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
