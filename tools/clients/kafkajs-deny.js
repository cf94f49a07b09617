#!/usr/bin/env node
// kafkajs against kwire's access rules (tests/integration/test_proxy_rules_kafkajs.py).
//
// usage: kafkajs-deny.js BOOTSTRAP DENIED_TOPIC ALLOWED_TOPIC N
//
// One kafkajs producer (one set of connections) sends N records to
// DENIED_TOPIC partition 0 and expects the send to fail, then sends N
// records to ALLOWED_TOPIC partition 0 and expects them acknowledged, then
// tries DENIED_TOPIC once more. Prints one JSON line: the error kafkajs
// gave for each denied send (its class name, its `type`, its `retriable`
// and whether it is a KafkaJSProtocolError, the class kafkajs uses for an
// error code a broker answered), the base offset of the allowed send, and
// how many times kafkajs connected (a connection dropped by kwire would
// show as a reconnection). Exit status 0 when it ran to the end.
//
// Modules come from $KWIRE_NODE_CLIENTS (default ~/.cache/kwire/node-clients).
'use strict'

const os = require('os')
const path = require('path')
const { createRequire } = require('module')

const MODULES =
  process.env.KWIRE_NODE_CLIENTS || path.join(os.homedir(), '.cache', 'kwire', 'node-clients')
const nrequire = createRequire(path.join(MODULES, 'package.json'))
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel } = nrequire('kafkajs')

const [bootstrap, denied, allowed, nstr] = process.argv.slice(2)
const n = parseInt(nstr || '5', 10)

// The error a failed send reports, down to the broker's error code: kafkajs
// wraps a non-retriable protocol error it got back from a broker as is.
function describe(e) {
  let inner = e
  while (inner && inner.errors && inner.errors.length && !inner.type)
    inner = inner.errors[0]
  return {
    name: e.name,
    inner: inner ? inner.name : null,
    type: inner ? inner.type || null : null,
    retriable: inner ? inner.retriable : null,
    message: inner ? String(inner.message) : null,
  }
}

function records(tag) {
  const v = []
  for (let i = 0; i < n; i++) v.push({ partition: 0, key: `k${i}`, value: `${tag}-${i}` })
  return v
}

async function main() {
  let connects = 0
  const kafka = new Kafka({
    clientId: 'kjs-deny',
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    retry: { retries: 2, initialRetryTime: 100 },
  })
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  producer.on(producer.events.CONNECT, () => connects++)
  await producer.connect()
  const out = { denied: [], allowed: null, connects: 0 }
  for (const round of [1, 2]) {
    try {
      await producer.send({ topic: denied, acks: -1, messages: records(`d${round}`) })
      out.denied.push({ ok: true })
    } catch (e) {
      out.denied.push(describe(e))
    }
    if (round === 1) {
      const r = await producer.send({ topic: allowed, acks: -1, messages: records('a') })
      out.allowed = r.map((m) => ({ topic: m.topicName, partition: m.partition,
                                    error: m.errorCode, base: m.baseOffset }))
    }
  }
  await producer.disconnect()
  out.connects = connects
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch((e) => {
  process.stderr.write(`kafkajs-deny: ${e.stack || e}\n`)
  process.exit(1)
})
