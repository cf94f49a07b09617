/* helper_fill.c: requests with something in every array, for the tests
 * that go over every API and version (helper_fill.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "helper_fill.h"
#include "kd-tree.h"

/* Fills a default request: two elements in every array (strings "k0"/"k1"
 * prefixed by the field's first letter, ints 0/1, uuids 0x10/0x11...),
 * down to depth 3. */
void fill_request(struct kd_tree *t, struct kd_node *n, unsigned depth)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		struct kd_node *k = &n->kids[i];
		if (k->type == KD_T_STRUCT && !k->null)
			fill_request(t, k, depth + 1);
		if (k->type != KD_T_ARRAY || depth > 3)
			continue;
		for (uint32_t j = 0; j < 2; j++) {
			struct kd_node *e = kd_node_array_add(t, k, UINT32_MAX);
			assert_non_null(e);
			e = &k->kids[j];
			if (e->type == KD_T_STRUCT) {
				for (uint32_t f = 0; f < e->nkids; f++) {
					struct kd_node *x = &e->kids[f];
					char s[16];
					uint8_t u[16] = {0};
					switch (x->type) {
					case KD_T_STRING:
						snprintf(s, sizeof(s), "%c%u-%u", x->field->name[0],
						         depth, j);
						assert_int_equal(
						    kd_node_set_str(t, x, s, strlen(s)), KD_OK);
						break;
					case KD_T_INT32:
						assert_int_equal(kd_node_set_int(x, (int64_t)j + 3),
						                 KD_OK);
						break;
					case KD_T_UUID:
						u[15] = (uint8_t)(0x10 + j + 2 * depth);
						assert_int_equal(kd_node_set_uuid(x, u), KD_OK);
						break;
					default:
						break;
					}
				}
				fill_request(t, e, depth + 1);
			} else if (e->type == KD_T_STRING) {
				char s[16];
				snprintf(s, sizeof(s), "s%u-%u", depth, j);
				assert_int_equal(kd_node_set_str(t, e, s, strlen(s)), KD_OK);
			} else if (e->type == KD_T_INT32) {
				assert_int_equal(kd_node_set_int(e, (int64_t)j + 3), KD_OK);
			}
		}
	}
}
