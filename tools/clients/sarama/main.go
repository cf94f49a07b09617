// kwire-sarama-client: the sarama scenario for kwire's tests
// (tests/integration/test_proxy_sarama.py, tools/capture-clients.sh).
//
// usage: kwire-sarama-client [-topic T] [-n N] [-group G] [-kafka-version V|auto] [-v] BOOTSTRAP EXPECTED_FILE
//
// sarama (Debian's golang-github-shopify-sarama-dev 1.22.1, a Go client that
// shares no code with librdkafka), configured as the Kafka version that
// -kafka-version names; auto (the default) asks the first bootstrap broker
// for its ApiVersions and picks 2.1.0 when it takes Metadata v5, else
// 0.11.0.0 (librdkafka 2.0.2's mock stops at Metadata v2 and closes the
// connection on anything newer; sarama never asks). For each codec
// it supports (none, gzip, snappy, lz4, zstd), in that order, one
// SyncProducer writes N keyed records with three headers (one with an empty
// value) to partition i of T for the i-th codec, in one SendMessages call.
// Then a consumer group G reads T from the oldest offset until it has every
// produced record, marks them, and leaves. The topic must exist with at least
// 5 partitions.
//
// EXPECTED_FILE gets one line per record, as tools/clients/expectlib.py
// writes them (format: docs/test-data.md): "produce" lines from the
// partition and offset sarama set on each acknowledged ProducerMessage,
// "fetch" lines from the ConsumerMessages it consumed. Exit status 0 when
// everything produced was consumed, 1 otherwise.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

var codecs = []struct {
	name string
	c    sarama.CompressionCodec
}{
	{"none", sarama.CompressionNone},
	{"gzip", sarama.CompressionGZIP},
	{"snappy", sarama.CompressionSnappy},
	{"lz4", sarama.CompressionLZ4},
	{"zstd", sarama.CompressionZSTD},
}

// Keys and values over this many bytes are written as their SHA-256, as
// expectlib.py does.
const digestOver = 64 * 1024

var nameOK = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func hexField(b []byte) string {
	if b == nil {
		return "-"
	}
	if len(b) > digestOver {
		d := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(d[:])
	}
	return hex.EncodeToString(b)
}

type header struct {
	name  string
	value []byte
}

func headersField(hs []header) string {
	if len(hs) == 0 {
		return "-"
	}
	out := make([]string, len(hs))
	for i, h := range hs {
		if !nameOK.MatchString(h.name) {
			fail("header name %q not allowed in expected files", h.name)
		}
		out[i] = h.name + "=" + hexField(h.value)
	}
	return strings.Join(out, ";")
}

func expectLine(w io.Writer, kind, topic string, partition int32, offset int64, codec string,
	key, value []byte, hs []header) {
	fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t-\t%s\t%s\t%s\n", kind, topic, partition, offset, codec,
		hexField(key), hexField(value), headersField(hs))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kwire-sarama-client: "+format+"\n", args...)
	os.Exit(1)
}

// The protocol level the clients are configured with (sarama does not
// negotiate versions; Config.Version fixes them).
var kafkaVersion sarama.KafkaVersion

// pickVersion asks the first bootstrap broker for its ApiVersions (v0) and
// returns 2.1.0 (Metadata v5) when it takes Metadata v5, else 0.11.0.0, the
// lowest level with record headers (Metadata v1). The other APIs sarama 1.22
// uses are at the same versions for both: Produce v3, Fetch v4.
func pickVersion(addr string) sarama.KafkaVersion {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V0_11_0_0
	cfg.ClientID = "sarama-probe"
	b := sarama.NewBroker(addr)
	if err := b.Open(cfg); err != nil {
		fail("%s: %v", addr, err)
	}
	defer b.Close()
	r, err := b.ApiVersions(&sarama.ApiVersionsRequest{})
	if err != nil {
		fail("%s: ApiVersions: %v", addr, err)
	}
	for _, k := range r.ApiVersions {
		if k.ApiKey == 3 && k.MaxVersion >= 5 {
			return sarama.V2_1_0_0
		}
	}
	return sarama.V0_11_0_0
}

func baseConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = kafkaVersion
	cfg.ClientID = clientID
	cfg.Net.DialTimeout = 10 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 200 * time.Millisecond
	return cfg
}

type record struct {
	key, value []byte
	headers    []header
}

func produce(bootstrap []string, topic string, n int, out io.Writer) (int, map[string]bool) {
	produced := map[string]bool{}
	total := 0
	for part, cd := range codecs {
		cfg := baseConfig("sarama-" + cd.name)
		cfg.Producer.Compression = cd.c
		cfg.Producer.Partitioner = sarama.NewManualPartitioner
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Return.Successes = true
		cfg.Producer.Retry.Max = 0
		// All N records in one batch per partition.
		cfg.Producer.Flush.Messages = n
		cfg.Producer.Flush.Frequency = 50 * time.Millisecond
		p, err := sarama.NewSyncProducer(bootstrap, cfg)
		if err != nil {
			fail("%s producer: %v", cd.name, err)
		}
		recs := make([]record, n)
		msgs := make([]*sarama.ProducerMessage, n)
		for i := 0; i < n; i++ {
			r := record{
				key:   []byte(fmt.Sprintf("sarama-%s-%d", cd.name, i)),
				value: []byte(strings.Repeat(fmt.Sprintf("sarama %s record %d ", cd.name, i), 6)),
				headers: []header{
					{"codec", []byte(cd.name)},
					{"seq", []byte(fmt.Sprint(i))},
					{"empty", []byte{}},
				},
			}
			recs[i] = r
			m := &sarama.ProducerMessage{Topic: topic, Partition: int32(part),
				Key: sarama.ByteEncoder(r.key), Value: sarama.ByteEncoder(r.value)}
			for _, h := range r.headers {
				m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.name), Value: h.value})
			}
			msgs[i] = m
		}
		if err := p.SendMessages(msgs); err != nil {
			fail("%s: produce: %v", cd.name, err)
		}
		for i, m := range msgs {
			r := recs[i]
			expectLine(out, "produce", m.Topic, m.Partition, m.Offset, cd.name, r.key, r.value,
				r.headers)
			produced[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = true
			total++
		}
		if err := p.Close(); err != nil {
			fail("%s producer close: %v", cd.name, err)
		}
	}
	return total, produced
}

// handler collects what the group's sessions consume.
type handler struct {
	mu      sync.Mutex
	out     io.Writer
	want    map[string]bool
	seen    map[string]bool
	done    chan struct{}
	closed  bool
	unknown int
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		var hs []header
		for _, rh := range m.Headers {
			hs = append(hs, header{string(rh.Key), rh.Value})
		}
		h.mu.Lock()
		k := fmt.Sprintf("%d/%d", m.Partition, m.Offset)
		expectLine(h.out, "fetch", m.Topic, m.Partition, m.Offset, "*", m.Key, m.Value, hs)
		if !h.want[k] {
			h.unknown++
		}
		h.seen[k] = true
		if len(h.seen) >= len(h.want) && !h.closed {
			h.closed = true
			close(h.done)
		}
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

func consume(bootstrap []string, topic, group string, want map[string]bool, out io.Writer) {
	cfg := baseConfig("sarama-consumer")
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	g, err := sarama.NewConsumerGroup(bootstrap, group, cfg)
	if err != nil {
		fail("consumer group: %v", err)
	}
	go func() {
		for err := range g.Errors() {
			fmt.Fprintf(os.Stderr, "kwire-sarama-client: consumer: %v\n", err)
		}
	}()
	h := &handler{out: out, want: want, seen: map[string]bool{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		// Consume returns at every rebalance; join again until cancelled.
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil {
				ended <- err
				return
			}
		}
		ended <- nil
	}()
	select {
	case <-h.done:
	case err := <-ended:
		fail("consumer group ended: %v", err)
	case <-time.After(60 * time.Second):
		h.mu.Lock()
		n := len(h.seen)
		h.mu.Unlock()
		fail("consumed %d of %d records in 60 s", n, len(want))
	}
	cancel()
	<-ended
	// Close commits the marked offsets and leaves the group.
	if err := g.Close(); err != nil {
		fail("consumer group close: %v", err)
	}
	if h.unknown > 0 {
		fail("consumed %d records that were not produced", h.unknown)
	}
}

func main() {
	topic := flag.String("topic", "sarama-codecs", "topic (at least 5 partitions)")
	n := flag.Int("n", 3, "records per codec")
	group := flag.String("group", "sarama-grp", "consumer group")
	verbose := flag.Bool("v", false, "sarama's log on stderr")
	version := flag.String("kafka-version", "auto",
		"sarama's Config.Version, or auto: 2.1.0 if the cluster takes Metadata v5, else 0.11.0.0")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-topic T] [-n N] [-group G] [-kafka-version V|auto] [-v] BOOTSTRAP EXPECTED_FILE\n",
			os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if *verbose {
		sarama.Logger = log.New(os.Stderr, "sarama: ", log.Lmicroseconds)
	}
	bootstrap := strings.Split(flag.Arg(0), ",")
	if *version == "auto" {
		kafkaVersion = pickVersion(bootstrap[0])
	} else if kafkaVersion, err = sarama.ParseKafkaVersion(*version); err != nil {
		fail("-kafka-version: %v", err)
	}
	fmt.Fprintf(os.Stderr, "kwire-sarama-client: sarama configured as Kafka %s\n", kafkaVersion)
	f, err := os.Create(flag.Arg(1))
	if err != nil {
		fail("%v", err)
	}
	total, want := produce(bootstrap, *topic, *n, f)
	consume(bootstrap, *topic, *group, want, f)
	if err := f.Close(); err != nil {
		fail("%s: %v", flag.Arg(1), err)
	}
	fmt.Fprintf(os.Stderr, "kwire-sarama-client: produced and consumed %d records\n", total)
}
