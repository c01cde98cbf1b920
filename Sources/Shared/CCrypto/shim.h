// SHA-256 from OpenSSL's libcrypto (Debian: libssl-dev, which librabbitmq-dev already pulls
// in): it uses the CPU's SHA extensions, ~15× the speed of portable code. Only
// Sources/Shared/Store/SHA256.swift imports this module.
#ifndef CSRCRYPTO_SHIM_H
#define CSRCRYPTO_SHIM_H
#include <openssl/evp.h>

// Opaque to Swift: a digest context, or NULL when OpenSSL cannot allocate one.
static inline void *csrcrypto_sha256_new(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static inline int csrcrypto_sha256_update(void *ctx, const void *bytes, size_t count) {
    return EVP_DigestUpdate((EVP_MD_CTX *)ctx, bytes, count);
}

// Writes 32 bytes to `out`; 1 on success.
static inline int csrcrypto_sha256_final(void *ctx, unsigned char *out) {
    unsigned int length = 0;
    return EVP_DigestFinal_ex((EVP_MD_CTX *)ctx, out, &length) == 1 && length == 32;
}

static inline void *csrcrypto_sha256_copy(const void *ctx) {
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    if (copy != NULL && EVP_MD_CTX_copy_ex(copy, (const EVP_MD_CTX *)ctx) != 1) {
        EVP_MD_CTX_free(copy);
        return NULL;
    }
    return copy;
}

static inline void csrcrypto_sha256_free(void *ctx) { EVP_MD_CTX_free((EVP_MD_CTX *)ctx); }
#endif
