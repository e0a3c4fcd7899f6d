/**
 * Uploads every file of a folder to an S3 bucket (creating the bucket when missing), for the
 * compose stack's one-shot job and for demos. Credentials come from the standard AWS chain.
 * Waits up to 60 s for the store to answer, since it may start at the same time.
 *
 *   node dist/scripts/upload-samples.js [--endpoint URL] --bucket NAME [--prefix P] FOLDER
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { endpoint: { type: 'string' }, bucket: { type: 'string' }, prefix: { type: 'string', default: '' } },
});
const [folder] = positionals;
if (!values.bucket || !folder) {
  console.error('upload-samples: usage: upload-samples [--endpoint URL] --bucket NAME [--prefix P] FOLDER');
  process.exit(1);
}
const bucket = values.bucket;

const s3 = new S3Client({
  ...(values.endpoint ? { endpoint: values.endpoint, forcePathStyle: true } : {}),
  // Plain PUTs with a length: S3-compatible stores (s3rver) mis-store aws-chunked uploads.
  requestChecksumCalculation: 'WHEN_REQUIRED',
});

async function bucketReady(): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await s3.send(new HeadBucketCommand({ Bucket: bucket }));
      return;
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) {
        await s3.send(new CreateBucketCommand({ Bucket: bucket }));
        return;
      }
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

try {
  await bucketReady();
  const names = (await readdir(folder, { withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => entry.name);
  for (const name of names) {
    const body = await readFile(join(folder, name));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${values.prefix}${name}`, Body: body }));
    console.log(`uploaded s3://${bucket}/${values.prefix}${name} (${body.length} bytes)`);
  }
} catch (error) {
  console.error(`upload-samples: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
