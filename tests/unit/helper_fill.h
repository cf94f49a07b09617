/* helper_fill.h: fills a default request tree (kd_tree_init_default):
 * two elements in every array (strings "k0"/"k1" prefixed by the field's
 * first letter, ints 3/4, uuids ending 0x10 + element + 2 x depth...),
 * down to depth 3. Call with depth 0 on the root. */
#ifndef HELPER_FILL_H
#define HELPER_FILL_H

#include "kd-tree-t.h"

void fill_request(struct kd_tree *t, struct kd_node *n, unsigned depth);

#endif
