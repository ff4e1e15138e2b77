//! Codec throughput: decoding one typical request and encoding its answer, per protocol (the end-to-end target is 200 000 requests a second on one core).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xcauth::proto::ejabberd::EjabberdCodec;
use xcauth::proto::generic::GenericCodec;
use xcauth::proto::postfix::{encode_text, PostfixCodec};
use xcauth::proto::saslauthd::SaslauthdCodec;
use xcauth::proto::{Codec, Decoded, Reply, SaslauthdFields};

/// Length-prefixed field, as ejabberd and saslauthd clients write it.
fn field(text: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(text.len())
        .expect("bench input is short")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(text);
    out
}

/// Feeds `input` (one request) and encodes `reply` for it, in a loop.
fn bench_codec(
    c: &mut Criterion,
    name: &str,
    mut codec: Box<dyn Codec>,
    input: Vec<u8>,
    reply: Reply,
) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function(name, |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(&input));
            let decoded = codec.decode(&mut buf);
            assert!(matches!(decoded, Decoded::Request(_)));
            codec.encode(black_box(&reply), &mut out);
            out.clear();
            decoded
        })
    });
    group.finish();
}

fn codecs(c: &mut Criterion) {
    let password = "correct horse battery staple";
    let auth = format!("auth:alice:example.org:{password}");

    bench_codec(
        c,
        "generic auth",
        Box::new(GenericCodec::default()),
        format!("{auth}\n").into_bytes(),
        Reply::Yes,
    );
    bench_codec(
        c,
        "ejabberd auth",
        Box::new(EjabberdCodec),
        field(auth.as_bytes()),
        Reply::Yes,
    );

    let four: Vec<u8> = [&b"alice"[..], password.as_bytes(), b"smtp", b"example.org"]
        .iter()
        .flat_map(|f| field(f))
        .collect();
    let mut five = four.clone();
    five.extend(field(b"192.0.2.7;51234"));
    bench_codec(
        c,
        "saslauthd auth (4 fields, auto)",
        Box::new(SaslauthdCodec::new(SaslauthdFields::Auto)),
        four,
        Reply::Yes,
    );
    bench_codec(
        c,
        "saslauthd auth (5 fields, auto)",
        Box::new(SaslauthdCodec::new(SaslauthdFields::Auto)),
        five,
        Reply::Yes,
    );

    bench_codec(
        c,
        "postfix isuser",
        Box::new(PostfixCodec::new("+".into())),
        b"get alice+lists@example.org\n".to_vec(),
        Reply::Yes,
    );
    bench_codec(
        c,
        "postfix isuser (encoded key)",
        Box::new(PostfixCodec::new("+".into())),
        format!("get {}\n", encode_text("jürgen@exämple.org")).into_bytes(),
        Reply::No,
    );
}

criterion_group!(benches, codecs);
criterion_main!(benches);
