#!/usr/bin/env node
// The kafkajs scenario for kwire's tests (tests/integration/test_proxy_kafkajs.py,
// tools/capture-clients.sh).
//
// usage: kafkajs-client.js [--topic T] [--n N] [--group G] [--client-prefix P] BOOTSTRAP
//                          EXPECTED_FILE
//
// kafkajs (pure JavaScript, shares no code with librdkafka) with the codecs
// installed by tools/install-clients.sh: kafkajs' own gzip, kafkajs-snappy,
// kafkajs-lz4, and zstd through zstd-codec (zstd compiled to JavaScript, no
// native build) behind the small codec adapter below. For each codec, in the
// order none, gzip, snappy, lz4, zstd, one producer sends N keyed records
// with three headers (one with an empty value) to partition i of T for the
// i-th codec, in one send() call (so one batch). Then a consumer in group G
// reads T from the beginning until it has every produced record, commits,
// and leaves. The topic must exist with at least 5 partitions. Client ids are
// kafkajs-CODEC and kafkajs-consumer, after P (tenants' tests map names by
// client id).
//
// EXPECTED_FILE gets one line per record, as tools/clients/expectlib.py
// writes them (format: docs/test-data.md): "produce" lines from the
// RecordMetadata kafkajs returns for the send (the batch's baseOffset; record
// i of the batch is at baseOffset + i), "fetch" lines from the messages the
// consumer's eachMessage handler got. Exit status 0 when everything produced
// was consumed, 1 otherwise.
//
// Modules come from $KWIRE_NODE_CLIENTS (default ~/.cache/kwire/node-clients).
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { createRequire } = require('module')

const MODULES =
  process.env.KWIRE_NODE_CLIENTS || path.join(os.homedir(), '.cache', 'kwire', 'node-clients')
const nrequire = createRequire(path.join(MODULES, 'package.json'))

// kafkajs prints a notice about its default partitioner; every record here
// names its partition.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = nrequire('kafkajs')

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD],
]

// Keys and values over this many bytes are written as their SHA-256, as
// expectlib.py does.
const DIGEST_OVER = 64 * 1024
const NAME_OK = /^[A-Za-z0-9._-]+$/

function die(msg) {
  process.stderr.write(`kafkajs-client: ${msg}\n`)
  process.exit(1)
}

function hexField(b) {
  if (b === null || b === undefined) return '-'
  if (!Buffer.isBuffer(b)) b = Buffer.from(b, 'utf8')
  if (b.length > DIGEST_OVER) return 'sha256:' + crypto.createHash('sha256').update(b).digest('hex')
  return b.toString('hex')
}

// headers: [[name, value], ...] in record order.
function headersField(headers) {
  if (!headers.length) return '-'
  return headers
    .map(([k, v]) => {
      if (!NAME_OK.test(k)) die(`header name ${JSON.stringify(k)} not allowed in expected files`)
      return `${k}=${hexField(v)}`
    })
    .join(';')
}

function line(kind, topic, partition, offset, codec, key, value, headers) {
  return (
    [kind, topic, partition, offset, codec, '-', hexField(key), hexField(value),
      headersField(headers)].join('\t') + '\n'
  )
}

// zstd for kafkajs: its codec interface is a factory returning
// { compress(encoder) -> Promise<Buffer>, decompress(Buffer) -> Promise<Buffer> }.
async function zstdCodec() {
  const { ZstdCodec } = nrequire('zstd-codec')
  const simple = await new Promise((resolve) => ZstdCodec.run((z) => resolve(new z.Simple())))
  return () => ({
    async compress(encoder) {
      return Buffer.from(simple.compress(encoder.buffer, 3))
    },
    async decompress(buffer) {
      const out = simple.decompress(buffer)
      if (!out) throw new Error('zstd: cannot decompress')
      return Buffer.from(out)
    },
  })
}

function parseArgs(argv) {
  const o = { topic: 'kafkajs-codecs', n: 3, group: 'kafkajs-grp', client_prefix: '', rest: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (['--topic', '--n', '--group', '--ssl-ca', '--ssl-cert', '--ssl-key', '--client-prefix'].includes(a)) {
      if (i + 1 >= argv.length) die(`${a} needs a value`)
      o[a.slice(2).replace('-', '_')] = argv[++i]
    } else if (a.startsWith('--')) {
      die(`unknown option ${a}`)
    } else {
      o.rest.push(a)
    }
  }
  o.n = Number(o.n)
  if (o.rest.length !== 2 || !Number.isInteger(o.n) || o.n < 1) {
    process.stderr.write(
      'usage: kafkajs-client.js [--topic T] [--n N] [--group G] ' +
        '[--client-prefix P] [--ssl-ca PEM [--ssl-cert PEM --ssl-key PEM]] BOOTSTRAP EXPECTED_FILE\n')
    process.exit(2)
  }
  return o
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const [bootstrap, expfile] = o.rest
  CompressionCodecs[CompressionTypes.Snappy] = nrequire('kafkajs-snappy')
  const LZ4Codec = nrequire('kafkajs-lz4')
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
  CompressionCodecs[CompressionTypes.ZSTD] = await zstdCodec()

  const out = fs.openSync(expfile, 'w')
  const write = (s) => fs.writeSync(out, s)
  // --ssl-ca: TLS (security.protocol SSL) trusting that CA; with
  // --ssl-cert/--ssl-key, a client certificate too.
  const ssl = o.ssl_ca
    ? {
        ca: [fs.readFileSync(o.ssl_ca)],
        ...(o.ssl_cert ? { cert: fs.readFileSync(o.ssl_cert), key: fs.readFileSync(o.ssl_key) } : {}),
      }
    : undefined
  const kafka = (clientId) =>
    new Kafka({
      clientId: o.client_prefix + clientId,
      brokers: bootstrap.split(','),
      ssl,
      logLevel: logLevel.ERROR,
      connectionTimeout: 10000,
      retry: { retries: 5 },
    })

  const want = new Set()
  for (let part = 0; part < CODECS.length; part++) {
    const [name, type] = CODECS[part]
    const producer = kafka(`kafkajs-${name}`).producer({ allowAutoTopicCreation: false })
    await producer.connect()
    const recs = []
    for (let i = 0; i < o.n; i++) {
      recs.push({
        partition: part,
        key: Buffer.from(`kafkajs-${name}-${i}`),
        value: Buffer.from(`kafkajs ${name} record ${i} `.repeat(6)),
        headers: { codec: name, seq: String(i), empty: '' },
      })
    }
    const md = await producer.send({ topic: o.topic, compression: type, acks: -1, messages: recs })
    if (md.length !== 1 || md[0].partition !== part || md[0].errorCode !== 0) {
      die(`${name}: unexpected RecordMetadata ${JSON.stringify(md)}`)
    }
    const base = BigInt(md[0].baseOffset)
    recs.forEach((r, i) => {
      const off = (base + BigInt(i)).toString()
      const hdrs = Object.entries(r.headers).map(([k, v]) => [k, Buffer.from(v)])
      write(line('produce', md[0].topicName, part, off, name, r.key, r.value, hdrs))
      want.add(`${part}/${off}`)
    })
    await producer.disconnect()
  }

  const consumer = kafka('kafkajs-consumer').consumer({ groupId: o.group, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: [o.topic], fromBeginning: true })
  const seen = new Set()
  let unknown = 0
  let finish
  const done = new Promise((resolve) => (finish = resolve))
  await consumer.run({
    autoCommitInterval: 200,
    eachMessage: async ({ topic, partition, message }) => {
      const hdrs = Object.entries(message.headers || {}).map(([k, v]) => [k, v])
      write(line('fetch', topic, partition, message.offset, '*', message.key, message.value, hdrs))
      const k = `${partition}/${message.offset}`
      if (!want.has(k)) unknown++
      seen.add(k)
      if (seen.size >= want.size) finish()
    },
  })
  const timer = setTimeout(() => finish('timeout'), 60000)
  const why = await done
  clearTimeout(timer)
  // disconnect() commits the offsets consumed and leaves the group.
  await consumer.disconnect()
  fs.closeSync(out)
  if (why === 'timeout') die(`consumed ${seen.size} of ${want.size} records in 60 s`)
  if (unknown) die(`consumed ${unknown} records that were not produced`)
  process.stderr.write(`kafkajs-client: produced and consumed ${want.size} records\n`)
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)))
