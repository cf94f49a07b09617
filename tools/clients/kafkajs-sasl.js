#!/usr/bin/env node
// kafkajs with SASL for kwire's tests (tests/integration/test_proxy_sasl.py).
//
// usage: kafkajs-sasl.js BOOTSTRAP MECHANISM USER PASSWORD TOPIC N [produce-only]
//
// MECHANISM is plain, scram-sha-256 or scram-sha-512 (kafkajs' names). The
// password comes from the environment variable named by PASSWORD when it
// starts with '$' (so that it is not in the process list). Produces N
// records to partition 0 of TOPIC, then reads TOPIC's partition 0 from the
// beginning in a consumer group until it has seen them all (not with
// produce-only: a group join takes seconds against the mock). Exit status 0
// when every record came back, 3 when the broker refused the
// authentication (KafkaJSSASLAuthenticationError), 1 otherwise. With
// KJS_CA set (a PEM file), the connection is TLS checked against that CA
// (SASL_SSL).
'use strict'

const fs = require('fs')
const os = require('os')
const path = require('path')
const { createRequire } = require('module')

const MODULES =
  process.env.KWIRE_NODE_CLIENTS || path.join(os.homedir(), '.cache', 'kwire', 'node-clients')
const nrequire = createRequire(path.join(MODULES, 'package.json'))
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel } = nrequire('kafkajs')

async function main () {
  const [bootstrap, mechanism, username, pw, topic, nstr, only] = process.argv.slice(2)
  const password = pw.startsWith('$') ? process.env[pw.slice(1)] : pw
  const n = parseInt(nstr, 10)
  const kafka = new Kafka({
    clientId: 'kafkajs-sasl',
    brokers: [bootstrap],
    sasl: { mechanism, username, password },
    ssl: process.env.KJS_CA ? { ca: [fs.readFileSync(process.env.KJS_CA, 'utf-8')] } : false,
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
    connectionTimeout: 5000,
    authenticationTimeout: 5000
  })
  const tag = `${mechanism}-${process.pid}`
  const producer = kafka.producer()
  await producer.connect()
  const messages = []
  for (let i = 0; i < n; i++) messages.push({ key: `k${i}`, value: `${tag}-${i}` })
  await producer.send({ topic, messages: messages.map((m) => ({ ...m, partition: 0 })) })
  await producer.disconnect()
  if (only === 'produce-only') {
    console.log(`ok produced ${n}`)
    return
  }

  // maxWaitTimeInMs: disconnect() waits for the fetch in flight, which the
  // mock cluster holds for its whole max wait once the records are read
  // (kafkajs's default: 5 s).
  const consumer = kafka.consumer({ groupId: `grp-${tag}`, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = new Set()
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.size} of ${n} records back`)), 30000)
    consumer.run({
      eachMessage: async ({ message }) => {
        const v = message.value.toString()
        if (v.startsWith(tag)) seen.add(v)
        if (seen.size === n) {
          clearTimeout(timer)
          resolve()
        }
      }
    })
  })
  await consumer.disconnect()
  console.log(`ok ${seen.size}`)
}

main().then(() => process.exit(0)).catch((e) => {
  console.error(`${e.name}: ${e.message}`)
  process.exit(e.name === 'KafkaJSSASLAuthenticationError' ? 3 : 1)
})
