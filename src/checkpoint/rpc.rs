//! The messages of CRIU's RPC (`criu swrk`), as far as berth uses them: a request, a response,
//! and what they carry. Written here with prost's derives, field by field from CRIU's
//! `images/rpc.proto` (proto2: `required` fields are always sent, `optional` ones when set);
//! fields berth never sends are left out, and unknown fields in CRIU's answers are skipped.

/// What a request asks for (`criu_req_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    CpuinfoDump = 7,
    CpuinfoCheck = 8,
    FeatureCheck = 9,
    Version = 10,
    WaitPid = 11,
    PageServerChld = 12,
    SinglePreDump = 13,
}

/// How CRIU treats cgroups (`criu_cg_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CgMode {
    Ignore = 0,
    CgNone = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// A mount CRIU leaves out of the image (dump: KEY is the mount point, VAL the name it is saved
/// under) and binds back from the host (restore: KEY is that name, VAL the host path).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// A namespace CRIU joins instead of making it (restore).
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinNamespace {
    #[prost(string, required, tag = "1")]
    pub ns: String,
    #[prost(string, required, tag = "2")]
    pub ns_file: String,
}

/// A descriptor of CRIU's own (it inherited it from berth) that stands for KEY in the image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// Where CRIU puts the restored tasks in one controller's hierarchy (no controller: all).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// The options of a dump or restore (`criu_opts`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuOpts {
    /// A descriptor of berth's: CRIU opens it through /proc/BERTH/fd/N. Always set it: the
    /// derived default (0) would name berth's standard input.
    #[prost(int32, required, tag = "1")]
    pub images_dir_fd: i32,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub ext_unix_sk: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9")]
    pub log_level: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub auto_dedup: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(bool, optional, tag = "18")]
    pub link_remap: Option<bool>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(bool, optional, tag = "26")]
    pub rst_sibling: Option<bool>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(enumeration = "CgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    #[prost(uint32, optional, tag = "38")]
    pub empty_ns: Option<u32>,
    #[prost(message, repeated, tag = "39")]
    pub join_ns: Vec<JoinNamespace>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    #[prost(string, optional, tag = "51")]
    pub config_file: Option<String>,
}

/// Features to ask about, and CRIU's answer (`criu_features`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Features {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
}

/// A request (`criu_req`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<CriuOpts>,
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<Features>,
}

/// The restored root task (`criu_restore_resp`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

/// A notification: CRIU reached a point where the caller may act (`criu_notify`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Notify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// CRIU's version (`criu_version`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
}

/// A response (`criu_resp`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(enumeration = "ReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<RestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<Notify>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<Features>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<Version>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_dump_request_encodes_as_criu_reads_it() {
        let req = Request {
            r#type: ReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: 5,
                pid: Some(42),
                leave_running: Some(true),
                ext_mnt: vec![ExtMountMap {
                    key: "/a".into(),
                    val: "/a".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        // type=1 (field 1, varint); opts (field 2, length 17): images_dir_fd=5 (field 1),
        // pid=42 (field 2), leave_running=1 (field 3), ext_mnt (field 23: tag 0xba 0x01,
        // length 8: key "/a" (field 1), val "/a" (field 2)).
        assert_eq!(
            bytes,
            [
                0x08, 0x01, 0x12, 0x11, 0x08, 0x05, 0x10, 0x2a, 0x18, 0x01, 0xba, 0x01, 0x08, 0x0a,
                0x02, b'/', b'a', 0x12, 0x02, b'/', b'a'
            ]
        );
    }

    #[test]
    fn a_notification_decodes_and_unknown_fields_are_skipped() {
        // type=NOTIFY, success=true, notify{script="post-restore", pid=7}, then field 11
        // (status, which berth does not read) = 0.
        let mut bytes = vec![0x08, 0x06, 0x10, 0x01, 0x2a, 0x10, 0x0a, 0x0c];
        bytes.extend(b"post-restore");
        bytes.extend([0x10, 0x07, 0x58, 0x00]);
        let resp = Response::decode(bytes.as_slice()).unwrap();
        assert_eq!(resp.r#type, ReqType::Notify as i32);
        assert!(resp.success);
        let notify = resp.notify.unwrap();
        assert_eq!(notify.script.as_deref(), Some("post-restore"));
        assert_eq!(notify.pid, Some(7));
    }
}
