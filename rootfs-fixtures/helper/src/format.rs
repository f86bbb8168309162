//! The pure pieces: parsing arguments and /proc text, and formatting what the subcommands print.

use std::time::Duration;

/// The value of `key` in /proc/PID/status text (`CapEff:\t000001ffffffffff` → `000001ffffffffff`).
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

/// Whether bit `bit` is set in a hexadecimal mask such as /proc's `CapEff` or `SigBlk`.
pub fn hex_mask_has_bit(mask: &str, bit: u32) -> Option<bool> {
    let mask = u64::from_str_radix(mask, 16).ok()?;
    Some(bit < 64 && mask >> bit & 1 == 1)
}

/// `uid=0 gid=0 euid=0 egid=0 groups=0,10`.
pub fn ids(uid: u32, gid: u32, euid: u32, egid: u32, groups: &[u32]) -> String {
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    format!(
        "uid={uid} gid={gid} euid={euid} egid={egid} groups={}",
        groups.join(",")
    )
}

/// A resource limit value: a number, or `unlimited`.
pub fn limit(value: libc::rlim_t) -> String {
    if value == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        value.to_string()
    }
}

/// A permission mode as four octal digits (`1777`), without the file type bits.
pub fn permissions(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// A duration given in seconds, fractions allowed (`0.25`); not negative, not infinite.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let seconds: f64 = text.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\thelper\nUmask:\t0022\nNoNewPrivs:\t1\nSeccomp:\t2\n\
                          CapEff:\t00000000a80425fb\nSigIgn:\t0000000000001000\n";

    #[test]
    fn status_fields_are_found_by_exact_name() {
        assert_eq!(status_field(STATUS, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(STATUS, "Seccomp"), Some("2"));
        assert_eq!(status_field(STATUS, "CapEff"), Some("00000000a80425fb"));
        assert_eq!(status_field(STATUS, "Cap"), None);
        assert_eq!(status_field(STATUS, "Seccomp_filters"), None);
    }

    #[test]
    fn mask_bits() {
        // 0xa80425fb is Docker's default set: CAP_CHOWN (0) in, CAP_NET_ADMIN (12) out,
        // CAP_NET_RAW (13) in, CAP_AUDIT_WRITE (29) in, CAP_SYS_ADMIN (21) out.
        let mask = "00000000a80425fb";
        assert_eq!(hex_mask_has_bit(mask, 0), Some(true));
        assert_eq!(hex_mask_has_bit(mask, 12), Some(false));
        assert_eq!(hex_mask_has_bit(mask, 13), Some(true));
        assert_eq!(hex_mask_has_bit(mask, 21), Some(false));
        assert_eq!(hex_mask_has_bit(mask, 29), Some(true));
        assert_eq!(hex_mask_has_bit(mask, 64), Some(false));
        // SIGPIPE (13) is bit 12 of the signal masks.
        assert_eq!(hex_mask_has_bit("0000000000001000", 12), Some(true));
        assert_eq!(hex_mask_has_bit("not hex", 0), None);
    }

    #[test]
    fn ids_line() {
        assert_eq!(
            ids(0, 0, 0, 0, &[0, 10]),
            "uid=0 gid=0 euid=0 egid=0 groups=0,10"
        );
        assert_eq!(
            ids(1000, 1000, 1000, 1000, &[]),
            "uid=1000 gid=1000 euid=1000 egid=1000 groups="
        );
    }

    #[test]
    fn limits() {
        assert_eq!(limit(1024), "1024");
        assert_eq!(limit(0), "0");
        assert_eq!(limit(libc::RLIM_INFINITY), "unlimited");
    }

    #[test]
    fn permissions_drop_the_type_bits() {
        assert_eq!(permissions(0o41777), "1777");
        assert_eq!(permissions(0o100644), "0644");
        assert_eq!(permissions(0o20666), "0666");
        assert_eq!(permissions(0o4755), "4755");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_seconds("0"), Some(Duration::ZERO));
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_seconds("inf"), None);
        assert_eq!(parse_seconds("NaN"), None);
        assert_eq!(parse_seconds("soon"), None);
    }
}
