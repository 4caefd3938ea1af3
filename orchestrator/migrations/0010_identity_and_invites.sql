-- Staff identities, API keys, and interviews with one-time invites.
-- Secrets are never stored: passwords as argon2id hashes, API keys and invite
-- tokens (long random strings) as SHA-256 digests.

CREATE TABLE users (
    user_id        uuid        PRIMARY KEY,
    -- Stored lower-cased, so sign-in is case-insensitive on the address.
    email          text        NOT NULL UNIQUE CHECK (email = lower(email)),
    display_name   text        NOT NULL DEFAULT '',
    role           text        NOT NULL CHECK (role IN ('admin', 'interviewer', 'analyst')),
    password_hash  text        NOT NULL,
    disabled       boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id         text        PRIMARY KEY,
    name           text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('admin', 'interviewer', 'analyst')),
    owner_user_id  uuid        NOT NULL REFERENCES users (user_id),
    secret_sha256  bytea       NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz,
    revoked_at     timestamptz
);

CREATE TABLE interviews (
    interview_id      uuid        PRIMARY KEY,
    candidate_name    text        NOT NULL,
    candidate_email   text        NOT NULL DEFAULT '',
    owner_user_id     uuid        NOT NULL REFERENCES users (user_id),
    -- The current invite; a re-issued invite replaces the digest.
    invite_sha256     bytea       NOT NULL UNIQUE,
    invite_expires_at timestamptz NOT NULL,
    invite_used_at    timestamptz,
    -- Set when the invite is used; one interview has at most one session.
    session_id        uuid        UNIQUE REFERENCES sessions (session_id),
    cancelled_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((session_id IS NULL) = (invite_used_at IS NULL))
);
CREATE INDEX interviews_owner_created ON interviews (owner_user_id, created_at DESC);
CREATE INDEX interviews_created ON interviews (created_at DESC);
