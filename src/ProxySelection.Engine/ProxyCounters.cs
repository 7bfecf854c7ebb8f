using ProxySelection.Engine.Diagnostics;

namespace ProxySelection.Engine;

/// <summary>
/// What the engine did, counted; safe to read from any thread. With <paramref name="telemetry"/>, SYN decisions and
/// hold times also go to the OpenTelemetry instruments (<c>proxysel.connections</c>, <c>proxysel.verdict.duration</c>).
/// </summary>
public sealed class ProxyCounters(ProxyTelemetry? telemetry = null)
{
    private long _syns;
    private long _passed;
    private long _held;
    private long _probesStarted;
    private long _probesAnswered;
    private long _probesAnsweredAtDeadline;
    private long _probesFailed;
    private long _released;
    private long _intercepted;
    private long _joinsIntercepted;
    private long _probesAdopted;
    private long _claimsAdded;
    private long _probeSignalsAdded;
    private long _egressUntouched;
    private long _upstreamSignalsAdded;
    private long _egressNoRoom;
    private long _hookFailures;
    private long _relayed;
    private long _maxHoldTicks;
    private long _probeAnswersSent;
    private long _synAcks;
    private long _holdsReset;
    private long _overloadPassed;
    private long _holdsOverdue;
    private long _edgeStripped;
    private long _joinsPassed;
    private long _kernelPassed;
    private long _kernelIntercepted;
    private long _kernelSignedSyns;
    private long _kernelSignedSynAcks;
    private long _kernelSignNoRoom;
    private long _joinsKernel;
    private long _joinsPassedKernel;

    /// <summary>SYNs (upstream legs) the kernel signed (<see cref="ProxyEngineOptions.KernelSigning"/>; read back each second).</summary>
    public long KernelSignedSyns => Interlocked.Read(ref _kernelSignedSyns);

    /// <summary>SYN/ACKs the kernel signed with the Claim.</summary>
    public long KernelSignedSynAcks => Interlocked.Read(ref _kernelSignedSynAcks);

    /// <summary>
    /// Segments the kernel had to send without the option: no room left (the upstream legs' MP_JOIN SYNs, mostly). A join's
    /// SYN/ACK is not counted: it carries no MP_PROXY.
    /// </summary>
    public long KernelSignNoRoom => Interlocked.Read(ref _kernelSignNoRoom);

    /// <summary>What the kernel signer counted so far.</summary>
    public void SetKernelSigned(long syns, long synAcks, long noRoom)
    {
        Interlocked.Exchange(ref _kernelSignedSyns, syns);
        Interlocked.Exchange(ref _kernelSignedSynAcks, synAcks);
        Interlocked.Exchange(ref _kernelSignNoRoom, noRoom);
    }

    /// <summary>MP_JOIN SYNs of held connections the kernel sent to the listener, never queued (<see cref="ProxyEngineOptions.KernelJoins"/>;
    /// read back each second and at stop). <see cref="JoinsIntercepted"/> counts those the engine decided.</summary>
    public long JoinsKernel => Interlocked.Read(ref _joinsKernel);

    public void SetKernelJoins(long joins) => Interlocked.Exchange(ref _joinsKernel, joins);

    /// <summary>MP_JOIN SYNs for tokens not this proxy's that the kernel passed, never queued (read back each second and at
    /// stop). <see cref="JoinsPassed"/> counts those the engine passed.</summary>
    public long JoinsPassedKernel => Interlocked.Read(ref _joinsPassedKernel);

    public void SetKernelJoinsPassed(long joins) => Interlocked.Exchange(ref _joinsPassedKernel, joins);

    /// <summary>SYNs the kernel fast path passed toward a known MPTCP server, never queued (its rules' counters, read back
    /// every few seconds and at stop; 0 without <see cref="ProxyEngineOptions.KernelFastPath"/>).</summary>
    public long KernelPassed => Interlocked.Read(ref _kernelPassed);

    /// <summary>SYNs the kernel fast path sent to the listener toward a known TCP-only server, never queued.</summary>
    public long KernelIntercepted => Interlocked.Read(ref _kernelIntercepted);

    /// <summary>What the kernel's rules counted so far (<see cref="Kernel.KernelCacheMirror"/>).</summary>
    /// <remarks>The rise since the last read goes to <c>proxysel.connections</c> (pass, intercept), tagged as the kernel's.</remarks>
    public void SetKernelDecided(long passed, long intercepted)
    {
        // Exchanged first: `telemetry?.Add(x - Exchange(...))` would skip the exchange when there is no telemetry.
        long passedRise = passed - Interlocked.Exchange(ref _kernelPassed, passed);
        long interceptedRise = intercepted - Interlocked.Exchange(ref _kernelIntercepted, intercepted);
        telemetry?.AddKernelDecided("pass", passedRise);
        telemetry?.AddKernelDecided("intercept", interceptedRise);
    }

    /// <summary>SYNs seen at the ingress hook. A downgrading proxy queues only SYNs with an MPTCP option (kind 30), so
    /// plain TCP through it is neither seen nor counted (here, in <c>status</c> or in the metrics).</summary>
    public long Syns => Interlocked.Read(ref _syns);

    /// <summary>SYN/ACKs from intercepted ports seen at the ingress hook (all accepted untouched). A downgrading proxy queues
    /// only those with an MPTCP option (kind 30): a TCP server's answers are not counted, nor, on the kernel fast path, a
    /// known MPTCP server's (they stay in the kernel).</summary>
    public long SynAcks => Interlocked.Read(ref _synAcks);

    /// <summary>SYNs accepted untouched at once (pass, defer, foreign join, not parsed).</summary>
    public long Passed => Interlocked.Read(ref _passed);

    /// <summary>SYNs held while a probe was out.</summary>
    public long Held => Interlocked.Read(ref _held);

    public long ProbesStarted => Interlocked.Read(ref _probesStarted);

    /// <summary>Probes whose connect completed (SYN/ACK seen).</summary>
    public long ProbesAnswered => Interlocked.Read(ref _probesAnswered);

    /// <summary>Probes whose answer was read from the socket at the deadline (the connect's completion had not run yet).</summary>
    public long ProbesAnsweredAtDeadline => Interlocked.Read(ref _probesAnsweredAtDeadline);

    /// <summary>Probes reset, refused or unreachable.</summary>
    public long ProbesFailed => Interlocked.Read(ref _probesFailed);

    /// <summary>Held SYNs accepted untouched after their probe.</summary>
    public long Released => Interlocked.Read(ref _released);

    /// <summary>SYNs sent to TPROXY (from the cache or after a probe).</summary>
    public long Intercepted => Interlocked.Read(ref _intercepted);

    public long JoinsIntercepted => Interlocked.Read(ref _joinsIntercepted);

    /// <summary>Probe connections that became an upstream leg.</summary>
    public long ProbesAdopted => Interlocked.Read(ref _probesAdopted);

    public long ClaimsAdded => Interlocked.Read(ref _claimsAdded);

    /// <summary>Other proxies' probes this proxy answered (Defer: its policy selected it over the prober).</summary>
    public long ProbeAnswersSent => Interlocked.Read(ref _probeAnswersSent);

    public long ProbeSignalsAdded => Interlocked.Read(ref _probeSignalsAdded);

    /// <summary>Upstream legs' SYNs that got the holder's Claim (downgrade) or Upgrade (spec §7.3.3).</summary>
    public long UpstreamSignalsAdded => Interlocked.Read(ref _upstreamSignalsAdded);

    /// <summary>Own SYNs/SYN-ACKs a signal was due on that had no option room left: they went out unchanged (fail open).</summary>
    public long EgressNoRoom => Interlocked.Read(ref _egressNoRoom);

    /// <summary>Own SYNs/SYN-ACKs the egress hook let go unchanged (no signal for them, or no room).</summary>
    public long EgressUntouched => Interlocked.Read(ref _egressUntouched);

    /// <summary>Exceptions in the per-packet path; each packet was accepted untouched (fail open).</summary>
    public long HookFailures => Interlocked.Read(ref _hookFailures);

    /// <summary>Relayed connections that ended.</summary>
    public long Relayed => Interlocked.Read(ref _relayed);

    /// <summary>Longest time a SYN was held, from its arrival in the hook to its verdict.</summary>
    public TimeSpan MaxHold => TimeSpan.FromTicks(Interlocked.Read(ref _maxHoldTicks));

    /// <summary>Held SYNs discarded because their sender reset the flow during the hold (spec §7.2).</summary>
    public long HoldsReset => Interlocked.Read(ref _holdsReset);

    public void AddHoldReset() => Interlocked.Increment(ref _holdsReset);

    /// <summary>SYNs that would have been held but passed untouched: too many held, or too long in the queue already.</summary>
    public long OverloadPassed => Interlocked.Read(ref _overloadPassed);

    public void AddOverloadPassed() => Interlocked.Increment(ref _overloadPassed);

    /// <summary>Held SYNs released at the hold limit by the hook thread because the probe's timer had not fired yet.</summary>
    public long HoldsOverdue => Interlocked.Read(ref _holdsOverdue);

    public void AddHoldOverdue() => Interlocked.Increment(ref _holdsOverdue);

    /// <summary>SYNs and SYN/ACKs leaving by an edge interface whose MP_PROXY options were stripped (spec §7.12).</summary>
    public long EdgeStripped => Interlocked.Read(ref _edgeStripped);

    public void AddEdgeStripped() => Interlocked.Increment(ref _edgeStripped);

    /// <summary>MP_JOIN SYNs passed untouched (a subflow of a connection another holds): not counted in <see cref="Passed"/>,
    /// which (like <c>proxysel.connections{decision=pass}</c>) counts connections.</summary>
    public long JoinsPassed => Interlocked.Read(ref _joinsPassed);

    public void AddJoinPassed() => Interlocked.Increment(ref _joinsPassed);

    public void AddSyn() => Interlocked.Increment(ref _syns);

    public void AddSynAck() => Interlocked.Increment(ref _synAcks);

    public void AddPassed()
    {
        Interlocked.Increment(ref _passed);
        telemetry?.AddConnection("pass");
    }

    public void AddHeld() => Interlocked.Increment(ref _held);

    public void AddProbeStarted() => Interlocked.Increment(ref _probesStarted);

    public void AddProbeAnswered() => Interlocked.Increment(ref _probesAnswered);

    public void AddProbeAnsweredAtDeadline() => Interlocked.Increment(ref _probesAnsweredAtDeadline);

    public void AddProbeFailed() => Interlocked.Increment(ref _probesFailed);

    public void AddReleased()
    {
        Interlocked.Increment(ref _released);
        telemetry?.AddConnection("release");
    }

    public void AddIntercepted()
    {
        Interlocked.Increment(ref _intercepted);
        telemetry?.AddConnection("intercept");
    }

    public void AddJoinIntercepted() => Interlocked.Increment(ref _joinsIntercepted);

    public void AddProbeAdopted() => Interlocked.Increment(ref _probesAdopted);

    public void AddClaim() => Interlocked.Increment(ref _claimsAdded);

    public void AddProbeAnswerSent()
    {
        Interlocked.Increment(ref _probeAnswersSent);
        telemetry?.AddConnection("answer_probe");
    }

    public void AddProbeSignal() => Interlocked.Increment(ref _probeSignalsAdded);

    public void AddEgressUntouched() => Interlocked.Increment(ref _egressUntouched);

    public void AddUpstreamSignal() => Interlocked.Increment(ref _upstreamSignalsAdded);

    public void AddEgressNoRoom() => Interlocked.Increment(ref _egressNoRoom);

    public void AddHookFailure() => Interlocked.Increment(ref _hookFailures);

    public void AddRelayed() => Interlocked.Increment(ref _relayed);

    public void RecordHold(TimeSpan held)
    {
        telemetry?.RecordVerdict(held);
        long ticks = held.Ticks;
        long seen = Interlocked.Read(ref _maxHoldTicks);
        while (ticks > seen)
        {
            long previous = Interlocked.CompareExchange(ref _maxHoldTicks, ticks, seen);
            if (previous == seen)
            {
                return;
            }

            seen = previous;
        }
    }

    /// <summary>Every count by the name the stop line gives it (what the <c>stopped</c> event carries).</summary>
    public IReadOnlyDictionary<string, long> Snapshot() => new Dictionary<string, long>(StringComparer.Ordinal)
    {
        ["syns"] = Syns, ["synacks"] = SynAcks, ["passed"] = Passed, ["held"] = Held, ["probes"] = ProbesStarted,
        ["probes_answered"] = ProbesAnswered, ["probes_answered_at_deadline"] = ProbesAnsweredAtDeadline, ["probes_failed"] = ProbesFailed, ["released"] = Released, ["intercepted"] = Intercepted,
        ["joins_intercepted"] = JoinsIntercepted, ["joins_kernel"] = JoinsKernel, ["probes_adopted"] = ProbesAdopted, ["claims_added"] = ClaimsAdded,
        ["probe_answers_sent"] = ProbeAnswersSent, ["probe_signals_added"] = ProbeSignalsAdded, ["egress_untouched"] = EgressUntouched,
        ["upstream_signals_added"] = UpstreamSignalsAdded, ["egress_no_room"] = EgressNoRoom, ["hook_failures"] = HookFailures,
        ["relayed"] = Relayed, ["holds_reset"] = HoldsReset, ["overload_passed"] = OverloadPassed, ["holds_overdue"] = HoldsOverdue, ["edge_stripped"] = EdgeStripped, ["joins_passed"] = JoinsPassed, ["joins_passed_kernel"] = JoinsPassedKernel, ["max_hold_us"] = (long)(MaxHold.TotalMicroseconds),
        ["kernel_passed"] = KernelPassed, ["kernel_intercepted"] = KernelIntercepted,
        ["kernel_signed_syns"] = KernelSignedSyns, ["kernel_signed_synacks"] = KernelSignedSynAcks, ["kernel_sign_no_room"] = KernelSignNoRoom,
    };

    public override string ToString() =>
        $"syns={Syns} synacks={SynAcks} passed={Passed} held={Held} probes={ProbesStarted} probes_answered={ProbesAnswered} probes_failed={ProbesFailed} " +
        $"released={Released} intercepted={Intercepted} joins_intercepted={JoinsIntercepted} joins_kernel={JoinsKernel} probes_adopted={ProbesAdopted} " +
        $"claims_added={ClaimsAdded} probe_answers_sent={ProbeAnswersSent} probe_signals_added={ProbeSignalsAdded} egress_untouched={EgressUntouched} " +
        $"upstream_signals_added={UpstreamSignalsAdded} egress_no_room={EgressNoRoom} " +
        $"hook_failures={HookFailures} relayed={Relayed} holds_reset={HoldsReset} overload_passed={OverloadPassed} holds_overdue={HoldsOverdue} edge_stripped={EdgeStripped} joins_passed={JoinsPassed} joins_passed_kernel={JoinsPassedKernel} max_hold_ms={MaxHold.TotalMilliseconds:F1} " +
        $"kernel_passed={KernelPassed} kernel_intercepted={KernelIntercepted} " +
        $"kernel_signed_syns={KernelSignedSyns} kernel_signed_synacks={KernelSignedSynAcks} kernel_sign_no_room={KernelSignNoRoom}";
}
