/* fuzz_px_tap.c: the tap's framer (px-tap.c) on any byte streams. The tap
 * follows the frames of what kwire forwards to hold and redact the
 * frames of sensitive APIs (kd-redact.h); the bytes come from clients and
 * brokers.
 *
 * Input: a list of commands: byte c, then for c % 3 == 0 a frame
 * announcement (direction, API key from a small table, version), else a
 * chunk of up to 255 bytes (length byte, then the bytes) in direction
 * c % 2. Checked: no crash, no leak, no access outside the chunks (ASan);
 * the tap writes to /dev/null. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "px-tap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct px_tap *tap;
	static const int16_t keys[] = {36, 17, 0, 3, -1, 38, 51};
	char err[256];
	if (!tap) {
		struct px_tap_opts o = {0, 1, 1 << 20};
		tap = px_tap_open("/dev/null", &o, NULL, NULL, err, sizeof(err));
		if (!tap)
			abort();
	}
	struct sockaddr_in c, b;
	memset(&c, 0, sizeof(c));
	memset(&b, 0, sizeof(b));
	c.sin_family = b.sin_family = AF_INET;
	c.sin_port = htons(1);
	b.sin_port = htons(2);
	struct px_tap_flow *f = px_tap_flow_new(tap, (struct sockaddr *)&c, (struct sockaddr *)&b);
	if (!f)
		return 0;
	size_t i = 0;
	while (i < size) {
		uint8_t cmd = data[i++];
		if (cmd % 3 == 0) {
			if (i + 2 > size)
				break;
			px_tap_flow_frame(f, data[i] & 1, keys[data[i] % 7], (int16_t)(data[i + 1] % 8));
			i += 2;
			continue;
		}
		if (i >= size)
			break;
		size_t n = data[i++];
		if (n > size - i)
			n = size - i;
		px_tap_flow_mem(f, cmd % 2, data + i, n);
		i += n;
	}
	px_tap_flow_end(&f);
	return 0;
}
