// Added by shipshape to kube-network-policies (cargo xtask cluster up --with network-policies).
//
// kube-network-policies sends the first packet of each connection to userspace with nftables'
// `queue` expression (CONFIG_NFT_QUEUE). Some kernels are built without it but with the
// xtables NFQUEUE target (CONFIG_NETFILTER_XT_TARGET_NFQUEUE), which nf_tables reaches through
// nft_compat, as `iptables-nft -j NFQUEUE` does. This probes once, in a table of its own with
// no hook (no packet ever passes it), and uses the target only where the expression is missing.

package networkpolicy

import (
	"encoding/binary"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"k8s.io/klog/v2"
)

var nativeQueue = sync.OnceValue(func() bool {
	nft, err := nftables.New()
	if err != nil {
		return true
	}
	table := &nftables.Table{Name: "kube-network-policies-queue-probe", Family: nftables.TableFamilyINet}
	nft.AddTable(table)
	chain := nft.AddChain(&nftables.Chain{Name: "probe", Table: table})
	nft.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{&expr.Queue{Num: 1}}})
	err = nft.Flush()
	nft.DelTable(table)
	_ = nft.Flush()
	if err != nil {
		klog.Infof("nftables has no queue expression (%v): queueing through the xtables NFQUEUE target", err)
		return false
	}
	return true
})

// queueVerdict is q, or the same verdict as xtables' NFQUEUE target (revision 3) where the
// kernel has no queue expression.
func queueVerdict(q *expr.Queue) expr.Any {
	if nativeQueue() {
		return q
	}
	// struct xt_NFQ_info_v3 { __u16 queuenum; __u16 queues_total; __u16 flags; }, padded to
	// XT_ALIGN (8 bytes), in the host's byte order. Flag 1 is NFQ_FLAG_BYPASS.
	info := make([]byte, 8)
	total := q.Total
	if total == 0 {
		total = 1
	}
	var flags uint16
	if q.Flag&expr.QueueFlagBypass != 0 {
		flags |= 1
	}
	binary.NativeEndian.PutUint16(info[0:], q.Num)
	binary.NativeEndian.PutUint16(info[2:], total)
	binary.NativeEndian.PutUint16(info[4:], flags)
	payload := xt.Unknown(info)
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &payload}
}
