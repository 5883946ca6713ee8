use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const XID: [u8; 3] = [0xab, 0xcd, 0xef];

fn opt(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
    o.extend_from_slice(data);
    o
}

/// A server's message as dnsmasq builds it: Server ID, Client ID, IA_NA with one address,
/// DNS servers and a search list.
fn server_message(msg_type: u8, server_id: bool) -> Vec<u8> {
    let mut m = vec![msg_type, XID[0], XID[1], XID[2]];
    m.extend(opt(OPT_CLIENTID, &duid_ll(MAC)));
    if server_id {
        m.extend(opt(
            OPT_SERVERID,
            &[0, 1, 0, 1, 1, 2, 3, 4, 0xaa, 0xbb, 0, 0, 0, 1],
        ));
    }
    let mut iaaddr = "fd42:2::163".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    iaaddr.extend_from_slice(&1800u32.to_be_bytes());
    iaaddr.extend_from_slice(&3600u32.to_be_bytes());
    let mut ia = IAID.to_be_bytes().to_vec();
    ia.extend_from_slice(&900u32.to_be_bytes());
    ia.extend_from_slice(&1440u32.to_be_bytes());
    ia.extend(opt(OPT_IAADDR, &iaaddr));
    m.extend(opt(OPT_IA_NA, &ia));
    m.extend(opt(OPT_PREFERENCE, &[7]));
    let mut dns = "fd42:2::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    dns.extend("fd42:2::2".parse::<Ipv6Addr>().unwrap().octets());
    m.extend(opt(OPT_DNS_SERVERS, &dns));
    m.extend(opt(OPT_DOMAIN_LIST, b"\x04prov\x04test\x00\x03lab\x00"));
    m
}

#[test]
fn a_solicit_carries_the_duid_ll_elapsed_time_oro_and_an_empty_ia_na() {
    let duid = duid_ll(MAC);
    let b = encode(&Outgoing {
        msg_type: SOLICIT,
        xid: XID,
        client_id: &duid,
        elapsed_cs: 0,
        ia_na: true,
        server_id: None,
        address: None,
    });
    let want: Vec<u8> = [
        vec![1, 0xab, 0xcd, 0xef],
        opt(1, &[0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        opt(8, &[0, 0]),
        opt(6, &[0, 23, 0, 24]),
        opt(3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
    ]
    .concat();
    assert_eq!(b, want);
}

#[test]
fn a_request_names_the_server_and_the_advertised_address() {
    let duid = duid_ll(MAC);
    let adv = accept(&server_message(ADVERTISE, true), ADVERTISE, XID, &duid).unwrap();
    let b = encode(&Outgoing {
        msg_type: REQUEST,
        xid: XID,
        client_id: &duid,
        elapsed_cs: 150,
        ia_na: true,
        server_id: adv.server_id.as_deref(),
        address: adv.addresses.first(),
    });
    let m = decode(&b).unwrap();
    assert_eq!(m.msg_type, REQUEST);
    assert_eq!(m.server_id, adv.server_id);
    assert_eq!(m.addresses, adv.addresses);
    assert!(b.windows(4).any(|w| w == [0, 8, 0, 2]), "elapsed time");
}

#[test]
fn a_reply_gives_the_address_dns_servers_and_search_list() {
    let duid = duid_ll(MAC);
    let r = accept(&server_message(REPLY, true), REPLY, XID, &duid).unwrap();
    assert_eq!(
        r.addresses,
        vec![IaAddr {
            addr: "fd42:2::163".parse().unwrap(),
            preferred: 1800,
            valid: 3600
        }]
    );
    assert_eq!(
        r.dns,
        vec![
            "fd42:2::1".parse::<Ipv6Addr>().unwrap(),
            "fd42:2::2".parse().unwrap()
        ]
    );
    assert_eq!(r.search, vec!["prov.test", "lab"]);
    assert_eq!((r.preference, r.status), (7, 0));
}

#[test]
fn a_reply_without_server_id_is_ignored() {
    // slirp's stateless Reply: Client ID and DNS, but no Server ID.
    let duid = duid_ll(MAC);
    assert_eq!(
        accept(&server_message(REPLY, false), REPLY, XID, &duid),
        Err(Dhcp6Error::NoServerId)
    );
}

#[test]
fn replies_for_others_or_of_the_wrong_type_are_ignored() {
    let duid = duid_ll(MAC);
    let other = duid_ll([2, 0, 0, 0, 0, 1]);
    let msg = server_message(REPLY, true);
    assert_eq!(accept(&msg, REPLY, XID, &other), Err(Dhcp6Error::NotOurs));
    assert_eq!(
        accept(&msg, REPLY, [0, 0, 1], &duid),
        Err(Dhcp6Error::NotOurs)
    );
    assert_eq!(
        accept(&msg, ADVERTISE, XID, &duid),
        Err(Dhcp6Error::UnexpectedType(REPLY))
    );
}

#[test]
fn truncated_messages_are_errors_not_panics() {
    let msg = server_message(REPLY, true);
    for cut in 0..msg.len() {
        let _ = decode(&msg[..cut]);
    }
    assert_eq!(decode(&msg[..3]), Err(Dhcp6Error::Truncated));
    assert_eq!(decode(&msg[..9]), Err(Dhcp6Error::Truncated));
}

#[test]
fn a_status_in_the_ia_na_is_read() {
    let duid = duid_ll(MAC);
    let mut ia = IAID.to_be_bytes().to_vec();
    ia.extend_from_slice(&[0; 8]);
    ia.extend(opt(OPT_STATUS_CODE, b"\x00\x02no addresses"));
    let mut m = vec![ADVERTISE, XID[0], XID[1], XID[2]];
    m.extend(opt(OPT_CLIENTID, &duid));
    m.extend(opt(OPT_SERVERID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
    m.extend(opt(OPT_IA_NA, &ia));
    let a = accept(&m, ADVERTISE, XID, &duid).unwrap();
    assert_eq!(a.ia_status, Some(2));
    assert!(a.addresses.is_empty());
}

#[test]
fn domain_names_skip_padding_and_stop_at_garbage() {
    assert_eq!(domain_names(b"\x03foo\x03bar\x00\x00\x00\x00"), ["foo.bar"]);
    assert_eq!(domain_names(b"\x03foo\x00\x09ab"), ["foo"]);
    assert!(domain_names(b"").is_empty());
}
