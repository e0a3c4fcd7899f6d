/**
 * The S3 stand-in for the S3 tests: bench/s3-store.ts (shared with the capacity run), with the
 * credentials the server under test finds through the standard AWS chain, as in production.
 * Vitest runs each test file in its own process, so this touches no other test.
 */
process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
delete process.env.AWS_SESSION_TOKEN;
delete process.env.AWS_PROFILE;

export { BUCKET, S3Store, type Fault, type SeenRequest, type Traffic } from '../../bench/s3-store.js';
