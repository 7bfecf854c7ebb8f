using ProxySelection.Interception.Rules;

namespace ProxySelection.Interception.Tests.Rules;

/// <summary>The iptables-restore script as text (no kernel, no commands run).</summary>
[TestFixture]
public sealed class InterceptionRulesetRenderTests
{
    [Test]
    public void RenderRestoreScript_KernelSigned_ResignedHandshakesRecordedBeforeTproxyAndOnlyTheirSynAcksQueued()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], QueueNumber = 3, EgressQueueNumber = 4, KernelSigned = true })
            .RenderRestoreScript();

        var lines = script.Split('\n').ToList();
        int record = lines.IndexOf("-A PSEL_TPROXY -p tcp --syn -m mark --mark 0x4/0x4 -j SET --add-set PSEL_RS4 src,src,dst --exist --timeout 3");
        int tproxy = lines.IndexOf("-A PSEL_TPROXY -p tcp -m mark --mark 0x1/0x1 -j TPROXY --on-port 0 --tproxy-mark 0x1/0x1");
        Assert.That(record, Is.GreaterThanOrEqualTo(0), "a SYN whose SYN/ACK the engine re-signs is recorded");
        Assert.That(record, Is.LessThan(tproxy), "before TPROXY, which ends the chain");
        Assert.That(lines, Has.One.EqualTo(
            "-A PSEL_EGRESS -p tcp --tcp-flags SYN,ACK SYN,ACK -m set --match-set PSEL_RS4 dst,dst,src -j NFQUEUE --queue-num 4 --queue-bypass"),
            "only a recorded handshake's SYN/ACK reaches the egress hook: the listener's others carry the kernel's Claim");
        Assert.That(new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], KernelSigned = true }).RenderRestoreScript(v6: true),
            Does.Contain("--match-set PSEL_RS6 dst,dst,src"));
        Assert.That(new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80] }).RenderRestoreScript(), Does.Not.Contain("_RS4"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void RenderRestoreScript_KernelJoinMatch_KnownTokenJoinsMarkedAndAcceptedBeforeTheFastPathAndTheQueue(bool v6)
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions
        {
            Ports = [80, 443], KernelSigned = true, FastPathPass = true, KernelJoinMatch = "/run/proxysel/bpf/proxysel-psel-42",
        }).RenderRestoreScript(v6);

        var lines = script.Split('\n').ToList();
        int mark = lines.IndexOf("-A PSEL_QUEUE -p tcp --syn --tcp-option 30 -m multiport --dports 80,443 -m bpf --object-pinned /run/proxysel/bpf/proxysel-psel-42 -m socket --transparent --nowildcard -j MARK --set-xmark 0x1/0x1");
        int accept = lines.IndexOf("-A PSEL_QUEUE -p tcp --syn -m multiport --dports 80,443 -m mark --mark 0x1/0x1 -j ACCEPT");
        int fast = lines.FindIndex(l => l.StartsWith("-A PSEL_QUEUE", StringComparison.Ordinal) && l.EndsWith("-j PSEL_FAST", StringComparison.Ordinal));
        int queue = lines.FindIndex(l => l.StartsWith("-A PSEL_QUEUE -p tcp --syn", StringComparison.Ordinal) && l.Contains("NFQUEUE", StringComparison.Ordinal));
        Assert.Multiple(() =>
        {
            Assert.That(mark, Is.GreaterThanOrEqualTo(0), "a join whose token the match knows gets the intercept mark (mangle's TPROXY takes it) while the listener is on the port");
            Assert.That(accept, Is.EqualTo(mark + 1), "and leaves the raw table at once");
            Assert.That(accept, Is.LessThan(fast), "before the fast path");
            Assert.That(accept, Is.LessThan(queue), "before the queue");
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public void RenderRestoreScript_KernelForeignJoinMatch_ForeignJoinsAcceptedAfterTheOwnJoinRuleAndBeforeTheFastPathAndTheQueue(bool v6)
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions
        {
            Ports = [80, 443], KernelSigned = true, FastPathPass = true, KernelJoinMatch = "/run/proxysel/bpf/proxysel-psel-42",
            KernelForeignJoinMatch = "/run/proxysel/bpf/foreign/proxysel-psel-42",
        }).RenderRestoreScript(v6);

        var lines = script.Split('\n').ToList();
        int own = lines.IndexOf("-A PSEL_QUEUE -p tcp --syn -m multiport --dports 80,443 -m mark --mark 0x1/0x1 -j ACCEPT");
        int foreign = lines.IndexOf("-A PSEL_QUEUE -p tcp --syn --tcp-option 30 -m multiport --dports 80,443 -m bpf --object-pinned /run/proxysel/bpf/foreign/proxysel-psel-42 -j ACCEPT");
        int fast = lines.FindIndex(l => l.StartsWith("-A PSEL_QUEUE", StringComparison.Ordinal) && l.EndsWith("-j PSEL_FAST", StringComparison.Ordinal));
        int queue = lines.FindIndex(l => l.StartsWith("-A PSEL_QUEUE -p tcp --syn", StringComparison.Ordinal) && l.Contains("NFQUEUE", StringComparison.Ordinal));
        Assert.Multiple(() =>
        {
            Assert.That(foreign, Is.GreaterThan(own), "a join of this proxy's is taken first");
            Assert.That(foreign, Is.LessThan(fast), "before the fast path");
            Assert.That(foreign, Is.LessThan(queue), "before the queue");
            Assert.That(lines[foreign], Does.Not.Contain("-m socket"), "passing needs no listener: a dead daemon's joins pass too");
        });
    }

    [Test]
    public void RenderRestoreScript_KernelRstGate_TheRstQueueRuleIsGated_TheSynQueueRuleIsNot()
    {
        var lines = new InterceptionRuleset(new InterceptionRulesetOptions
        {
            Ports = [80], KernelSigned = true, KernelRstGate = "/run/proxysel/bpf/rst/proxysel-psel-42",
        }).RenderRestoreScript().Split('\n');
        Assert.That(lines, Has.One.EqualTo("-A PSEL_QUEUE -p tcp --tcp-flags SYN,RST RST -m multiport --dports 80 -m bpf --object-pinned /run/proxysel/bpf/rst/proxysel-psel-42 -j NFQUEUE --queue-num 0 --queue-bypass"));
        Assert.That(lines.Where(l => l.Contains("--syn", StringComparison.Ordinal) && l.Contains("NFQUEUE", StringComparison.Ordinal)), Has.None.Contains("rst/"));
    }

    [Test]
    public void Validate_KernelForeignJoinMatchNotOneWord_Refused() =>
        Assert.That(() => new InterceptionRulesetOptions { Ports = [80], KernelForeignJoinMatch = "/run/a b" }.Validate(),
            Throws.ArgumentException.With.Message.Contains("KernelForeignJoinMatch"));

    [Test]
    public void RenderRestoreScript_NoKernelJoinMatch_NoBpfObjectRule() =>
        Assert.That(new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], KernelSigned = true }).RenderRestoreScript(),
            Does.Not.Contain("--object-pinned"));

    [TestCase("/run/proxysel/bpf/a b")]
    [TestCase("/run/\"x")]
    [TestCase("")]
    public void Validate_KernelJoinMatchNotOneWord_Refused(string path) =>
        Assert.That(() => new InterceptionRulesetOptions { Ports = [80], KernelJoinMatch = path }.Validate(),
            Throws.ArgumentException.With.Message.Contains("KernelJoinMatch"));

    [Test]
    public void Validate_KernelSignedResignMaskSharingTheInterceptBit_Refused() =>
        Assert.That(() => new InterceptionRulesetOptions { Ports = [80], KernelSigned = true, ResignMark = 0x1, ResignMask = 0x1 }.Validate(),
            Throws.ArgumentException.With.Message.Contains("ResignMask"));

    [Test]
    public void RenderRestoreScript_SixteenPorts_SplitIntoMultiportRulesOfAtMostFifteen()
    {
        var ports = Enumerable.Range(1000, 16).Select(p => (ushort)p).ToArray();
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = ports }).RenderRestoreScript();

        var queueRules = script.Split('\n').Where(l => l.StartsWith("-A PSEL_QUEUE -p tcp --syn", StringComparison.Ordinal)).ToList();
        Assert.That(queueRules, Has.Count.EqualTo(2));
        Assert.That(queueRules[0], Does.Contain("--dports 1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014 "));
        Assert.That(queueRules[1], Does.Contain("--dports 1015 "));
    }

    [Test]
    public void RenderRestoreScript_CustomMarksQueuesAndPrefix_UsedEverywhere()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions
        {
            ChainPrefix = "PX2",
            Ports = [443, 80, 443],
            QueueNumber = 12,
            EgressQueueNumber = 13,
            InterceptMark = 0x100,
            InterceptMask = 0x300,
            EgressMark = 0x400,
            EgressMask = 0x400,
        }).RenderRestoreScript();

        Assert.That(script, Does.Contain("-A PX2_QUEUE -p tcp --syn -m multiport --dports 80,443 -j NFQUEUE --queue-num 12 --queue-bypass\n"));
        Assert.That(script, Does.Contain("-A PX2_TPROXY -p tcp -m socket --transparent -j PX2_LOCAL\n"));
        Assert.That(script, Does.Contain("-A PX2_LOCAL -j MARK --set-xmark 0x100/0x300\n-A PX2_LOCAL -j ACCEPT\n"));
        Assert.That(script.Split('\n').Count(l => l.Contains("-m socket --transparent -j", StringComparison.Ordinal)), Is.EqualTo(1),
            "one socket lookup per TCP packet of a passed flow, not one per rule");
        Assert.That(script, Does.Contain("-A PX2_TPROXY -p tcp -m mark --mark 0x100/0x300 -j TPROXY --on-port 0 --tproxy-mark 0x100/0x300\n"));
        Assert.That(script, Does.Contain("-m mark --mark 0x400/0x400 -j NFQUEUE --queue-num 13 --queue-bypass\n"));
        Assert.That(script, Does.Contain("-I PREROUTING 1 -j PX2_QUEUE\n").And.Contain("-I POSTROUTING 1 -j PX2_EGRESS\n"));
        Assert.That(script.Split('\n').Count(l => l == "COMMIT"), Is.EqualTo(2));
    }

    [Test]
    public void RenderRestoreScript_QueueOnlyMptcpSyns_ClientSynRuleMatchesOption30AndSynAckAndEgressRulesStayUnfiltered()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80, 443], QueueNumber = 3, QueueSynAcks = true, QueueOnlyMptcpSyns = true })
            .RenderRestoreScript();

        var lines = script.Split('\n');
        Assert.That(lines, Has.One.EqualTo("-A PSEL_QUEUE -p tcp --syn --tcp-option 30 -m multiport --dports 80,443 -j NFQUEUE --queue-num 3 --queue-bypass"));
        Assert.That(lines, Has.One.EqualTo(
            "-A PSEL_QUEUE -p tcp --tcp-flags SYN,ACK,RST SYN,ACK -m multiport --sports 80,443 -j NFQUEUE --queue-num 3 --queue-bypass"),
            "SYN/ACKs are filtered only when asked separately");
        Assert.That(lines.Where(l => l.StartsWith("-A PSEL_EGRESS", StringComparison.Ordinal)), Has.All.Not.Contain("--tcp-option"));
    }

    [Test]
    public void RenderRestoreScript_QueueOnlyMptcpSynAcks_SynAckRuleMatchesOption30AndEgressStaysUnfiltered()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions
        {
            Ports = [80, 443], QueueNumber = 3, QueueSynAcks = true, QueueOnlyMptcpSyns = true, QueueOnlyMptcpSynAcks = true,
        }).RenderRestoreScript();

        var lines = script.Split('\n');
        Assert.That(lines, Has.One.EqualTo(
            "-A PSEL_QUEUE -p tcp --tcp-flags SYN,ACK,RST SYN,ACK --tcp-option 30 -m multiport --sports 80,443 -j NFQUEUE --queue-num 3 --queue-bypass"));
        Assert.That(lines.Where(l => l.StartsWith("-A PSEL_EGRESS", StringComparison.Ordinal)), Has.All.Not.Contain("--tcp-option"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void RenderRestoreScript_FastPathPass_KnownMptcpServersSynAcksAcceptedBeforeTheSynAckQueueRule(bool v6)
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions
        {
            Ports = [80, 443], QueueNumber = 3, QueueSynAcks = true, QueueOnlyMptcpSyns = true, QueueOnlyMptcpSynAcks = true, FastPathPass = true,
        }).RenderRestoreScript(v6);

        var lines = script.Split('\n').ToList();
        string set = v6 ? "PSEL_MP6" : "PSEL_MP4";
        int skip = lines.IndexOf($"-A PSEL_QUEUE -p tcp --tcp-flags SYN,ACK,RST SYN,ACK -m multiport --sports 80,443 -m set --match-set {set} src,src ! --update-counters -j ACCEPT");
        int queue = lines.IndexOf("-A PSEL_QUEUE -p tcp --tcp-flags SYN,ACK,RST SYN,ACK --tcp-option 30 -m multiport --sports 80,443 -j NFQUEUE --queue-num 3 --queue-bypass");
        Assert.That(skip, Is.Not.Negative, script);
        Assert.That(queue, Is.GreaterThan(skip), "the known server's SYN/ACK is accepted before the queue rule sees it");
    }

    [Test]
    public void RenderRestoreScript_SynAcksQueuedWithoutTheOption30Filter_NoKernelSynAckSkip()
    {
        // An upgrading proxy learns "TCP only" from every answer: nothing skips the queue.
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], QueueSynAcks = true, FastPathPass = true }).RenderRestoreScript();

        Assert.That(script.Split('\n').Where(l => l.Contains("SYN,ACK", StringComparison.Ordinal)), Has.None.Contain("-j ACCEPT"));
    }

    [Test]
    public void RenderRestoreScript_RstsTowardThePortsAreQueued_WhateverTheSynFilter()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80, 443], QueueNumber = 3, QueueOnlyMptcpSyns = true })
            .RenderRestoreScript();

        Assert.That(script.Split('\n'), Has.One.EqualTo(
            "-A PSEL_QUEUE -p tcp --tcp-flags SYN,RST RST -m multiport --dports 80,443 -j NFQUEUE --queue-num 3 --queue-bypass"));
    }

    [Test]
    public void RenderRestoreScript_DefaultOptions_ClientSynRuleQueuesEverySyn()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80] }).RenderRestoreScript();

        Assert.That(script, Does.Contain("-A PSEL_QUEUE -p tcp --syn -m multiport --dports 80 -j NFQUEUE --queue-num 0 --queue-bypass\n"));
        Assert.That(script, Does.Not.Contain("--tcp-option"));
    }

    [Test]
    public void RenderRestoreScript_HandshakeSet_InterceptedSynAddedPassedSynRemovesItsKeyThenTheSocketlessAckSentToTproxyAfterTheMarkRule()
    {
        var o = new InterceptionRulesetOptions { ChainPrefix = "PX2", Ports = [80], HandshakeSetSeconds = 4 };
        var v4 = new InterceptionRuleset(o).RenderRestoreScript(v6: false).Split('\n').Where(l => l.StartsWith("-A PX2_TPROXY", StringComparison.Ordinal)).ToList();
        var v6 = new InterceptionRuleset(o).RenderRestoreScript(v6: true);

        Assert.That(v4, Is.EqualTo(new[]
        {
            "-A PX2_TPROXY -p tcp -m socket --transparent -j PX2_LOCAL",
            "-A PX2_TPROXY -p tcp --syn -m mark --mark 0x1/0x1 -j SET --add-set PX2_HS4 src,src,dst --exist --timeout 4",
            "-A PX2_TPROXY -p tcp --syn -m mark ! --mark 0x1/0x1 -m multiport --dports 80 -j SET --del-set PX2_HS4 src,src,dst",
            "-A PX2_TPROXY -p tcp -m mark --mark 0x1/0x1 -j TPROXY --on-port 0 --tproxy-mark 0x1/0x1",
            "-A PX2_TPROXY -p tcp --tcp-flags SYN,RST,ACK ACK -m multiport --dports 80 -m set --match-set PX2_HS4 src,src,dst -j TPROXY --on-port 0 --tproxy-mark 0x1/0x1",
        }));
        Assert.That(v6, Does.Contain("--add-set PX2_HS6 src,src,dst").And.Contain("--del-set PX2_HS6 src,src,dst").And.Contain("--match-set PX2_HS6 src,src,dst").And.Not.Contain("HS4"));
        Assert.That(v4, Has.None.Contain("--nowildcard"), "a wildcard match would capture passed flows' ACKs");
    }

    [Test]
    public void RenderRestoreScript_HandshakeSetOff_NoSetRules()
    {
        var script = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], HandshakeSetSeconds = 0 }).RenderRestoreScript();

        Assert.That(script, Does.Not.Contain("-m set").And.Not.Contain("-j SET"));
    }
}
