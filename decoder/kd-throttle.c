/* kd-throttle.c: ThrottleTimeMs in responses (kd-throttle.h). */
#include "kd-throttle.h"
#include "kd-cur.h"
#include "kd-t.h"
#include "kd-walk.h"

/* The first version of each API whose response a broker sends before
 * throttling (KIP-219). From the schemas' comments ("Starting in version
 * N, on quota violation, brokers send out responses before throttling",
 * the *Response.json files of ../shared/kafka-protocol/message), and for the two whose
 * schemas do not say it, from KIP-219's list of bumped versions: Produce
 * v6 ("Version 5 and 6 are the same as version 3") and
 * OffsetForLeaderEpoch v3 ("Version 3 is the same as version 2"). APIs
 * added after KIP-219 (key 43, ElectLeaders, and later) throttle from
 * their first version; 0 marks an API older than KIP-219 that never got
 * the bump (no ThrottleTimeMs). */
static const int8_t kip219_first[43] = {
    [0] = 6,  /* Produce */
    [1] = 8,  /* Fetch */
    [2] = 3,  /* ListOffsets */
    [3] = 6,  /* Metadata */
    [8] = 4,  /* OffsetCommit */
    [9] = 4,  /* OffsetFetch */
    [10] = 2, /* FindCoordinator */
    [11] = 3, /* JoinGroup */
    [12] = 2, /* Heartbeat */
    [13] = 2, /* LeaveGroup */
    [14] = 2, /* SyncGroup */
    [15] = 2, /* DescribeGroups */
    [16] = 2, /* ListGroups */
    [18] = 2, /* ApiVersions */
    [19] = 3, /* CreateTopics */
    [20] = 2, /* DeleteTopics */
    [21] = 1, /* DeleteRecords */
    [22] = 1, /* InitProducerId */
    [23] = 3, /* OffsetForLeaderEpoch */
    [24] = 1, /* AddPartitionsToTxn */
    [25] = 1, /* AddOffsetsToTxn */
    [26] = 1, /* EndTxn */
    [28] = 1, /* TxnOffsetCommit */
    [29] = 1, /* DescribeAcls */
    [30] = 1, /* CreateAcls */
    [31] = 1, /* DeleteAcls */
    [32] = 2, /* DescribeConfigs */
    [33] = 1, /* AlterConfigs */
    [34] = 1, /* AlterReplicaLogDirs */
    [35] = 1, /* DescribeLogDirs */
    [37] = 1, /* CreatePartitions */
    [38] = 1, /* CreateDelegationToken */
    [39] = 1, /* RenewDelegationToken */
    [40] = 1, /* ExpireDelegationToken */
    [41] = 1, /* DescribeDelegationToken */
    [42] = 1, /* DeleteGroups */
};

int kd_throttle_kip219(int16_t api_key, int16_t version)
{
	if (kd_body_field_index(api_key, version, 0, "ThrottleTimeMs") < 0)
		return 0; /* nothing to tell the client with: hold it back */
	if (api_key >= (int16_t)sizeof(kip219_first))
		return 1;
	return api_key >= 0 && kip219_first[api_key] && version >= kip219_first[api_key];
}

int kd_throttle_first(int16_t api_key, int16_t version)
{
	return kd_body_field_index(api_key, version, 0, "ThrottleTimeMs") == 0;
}

long kd_throttle_offset(int16_t api_key, int16_t version, const uint8_t *body, size_t len)
{
	int idx = kd_body_field_index(api_key, version, 0, "ThrottleTimeMs");
	if (idx < 0)
		return KD_EUNSUPPORTED;
	if (idx == 0)
		return 0;
	struct kd_walk w;
	int rc = kd_walk_init(&w, api_key, version, 0, len);
	if (rc == KD_OK)
		rc = kd_walk_stop_before(&w, "ThrottleTimeMs");
	if (rc != KD_OK)
		return rc;
	size_t used = 0;
	rc = kd_walk_feed(&w, body, len, &used);
	if (rc == KD_WALK_STOP)
		return (long)w.off;
	if (rc == KD_NEED_MORE || rc == KD_ESHORT || rc == KD_WALK_END)
		return KD_NEED_MORE;
	return rc < 0 ? rc : KD_EMALFORMED;
}

int kd_throttle_raise(int16_t api_key, int16_t version, uint8_t *frame, size_t len, size_t hdr_len,
                      uint32_t ms)
{
	if (len < 4 + hdr_len)
		return KD_ESHORT;
	long off = kd_throttle_offset(api_key, version, frame + 4 + hdr_len, len - 4 - hdr_len);
	if (off < 0)
		return off == KD_NEED_MORE ? KD_ESHORT : (int)off;
	uint8_t *p = frame + 4 + hdr_len + off;
	if ((size_t)off + 4 > len - 4 - hdr_len)
		return KD_ESHORT;
	int32_t broker = (int32_t)kd_load_be(p, 4);
	if (ms > INT32_MAX)
		ms = INT32_MAX;
	if (broker >= (int64_t)ms)
		return 0;
	p[0] = (uint8_t)(ms >> 24);
	p[1] = (uint8_t)(ms >> 16);
	p[2] = (uint8_t)(ms >> 8);
	p[3] = (uint8_t)ms;
	return 1;
}
