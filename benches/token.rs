//! Token throughput: checking a valid token, turning away an ordinary
//! password, and making a token (target: well over a million checks a second).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use xcauth::token::{TokenCheck, TokenKey};

fn bench_tokens(c: &mut Criterion) {
    let key = TokenKey::new(b"01234");
    let token = key.make("tuser", "tdomain", 4600);

    c.bench_function("token check valid", |b| {
        b.iter(|| {
            let r = key.check(
                black_box("tuser"),
                black_box("tdomain"),
                black_box(&token),
                black_box(2000),
            );
            debug_assert_eq!(r, TokenCheck::Valid);
            r
        })
    });

    c.bench_function("token check ordinary password", |b| {
        b.iter(|| {
            key.check(
                black_box("tuser"),
                black_box("tdomain"),
                black_box("correct horse battery staple"),
                black_box(2000),
            )
        })
    });

    c.bench_function("token check bad mac", |b| {
        b.iter(|| {
            key.check(
                black_box("someone"),
                black_box("tdomain"),
                black_box(&token),
                black_box(2000),
            )
        })
    });

    c.bench_function("token make", |b| {
        b.iter(|| key.make(black_box("tuser"), black_box("tdomain"), black_box(4600)))
    });

    c.bench_function("token key new", |b| {
        b.iter(|| TokenKey::new(black_box(b"01234")))
    });
}

criterion_group!(benches, bench_tokens);
criterion_main!(benches);
