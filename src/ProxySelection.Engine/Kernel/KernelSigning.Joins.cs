using ProxySelection.Negotiation;

namespace ProxySelection.Engine.Kernel;

/// <summary>
/// The foreign-join pass (issue 13, "pass a join this proxy does not hold"): a join whose token is not in the kernel's
/// join map goes on in the kernel, which is right only while the map holds every token this proxy handed out. The map
/// misses one when the egress program could not store it (full), or when a SYN/ACK left by an interface without the
/// program (one that came up since, or refused it). Then the match is closed, and opened again once
/// <see cref="HandshakeAge"/> has passed with nothing missed, after storing every held connection's token: by then a
/// missed handshake has become a held connection (stored) or has ended. Until then foreign joins cross the queue.
/// </summary>
public sealed partial class KernelSigning
{
    /// <summary>How long a handshake may take from the listener's SYN/ACK to the engine's accept: a token this old whose
    /// connection is not held is swept, and a doubt this old is over.</summary>
    public static readonly TimeSpan HandshakeAge = TimeSpan.FromSeconds(30);

    private const int SweepPeriodChecks = 10;

    private readonly Lock _joinMapLock = new();
    private bool _foreignEnabled;
    private bool _foreignOpen;
    private ulong _acknowledgedFailures;
    private long _doubtSinceNs;
    private int _checks;
    private volatile bool _egressMissed; // an interface attached since the last check, or one refusing the program

    /// <summary>The pinned foreign-join match for the ruleset, or null.</summary>
    public string? ForeignJoinMatchPath => _foreignEnabled ? _signer.ForeignJoinMatchPath : null;

    /// <summary>
    /// Opens the foreign-join match, after <see cref="AttachEgress"/> and before the rules are in (no SYN/ACK of the
    /// listener has left, so the empty map is whole). Not where the domain has edges: a SYN/ACK leaving by an edge is
    /// not learnt.
    /// </summary>
    public void OpenForeignJoins()
    {
        if (_signer.ForeignJoinMatchPath is null || _signer.ReadJoinMapState() is not { } state)
        {
            return;
        }

        lock (_joinMapLock)
        {
            _egressMissed = false;
            _foreignEnabled = true;
            _acknowledgedFailures = state.Failures;
            _signer.AcknowledgeJoinMap(state.Failures);
            _foreignOpen = true;
        }
    }

    /// <summary>The pinned RST gate for the ruleset's RST queue rule, or null.</summary>
    public string? RstGatePath => _signer.RstGatePath;

    /// <summary>Opens the RST gate (a SYN is held) or closes it; true when the kernel took it.</summary>
    public bool SetRstGate(bool open) => _signer.SetRstGate(open) == 0;

    /// <summary>A held connection ended: its joins are no longer this proxy's.</summary>
    public void JoinTokenEnded(uint token) => _signer.RemoveJoinToken(token);

    /// <summary>
    /// About once a second, off the packet threads: notices a missed token (closes the match), sweeps tokens of
    /// handshakes that never became connections every ten calls, and opens the match again when the doubt is over.
    /// Returns the change for the log: true opened, false closed, null none.
    /// </summary>
    public (bool Open, string Reason)? CheckJoinMap(TokenRegistry held)
    {
        ArgumentNullException.ThrowIfNull(held);
        if (!_foreignEnabled || _signer.ReadJoinMapState() is not { } state)
        {
            return null;
        }

        long now = Interception.Bpf.KernelJoinClock.Nanoseconds();
        if (++_checks >= SweepPeriodChecks)
        {
            _checks = 0;
            _signer.SweepJoinTokens(held.Contains, HandshakeAge);
        }

        lock (_joinMapLock)
        {
            bool missed = _egressMissed;
            _egressMissed = false;
            string? doubt = missed ? "an interface came up or refused the egress program"
                : state.Failures != _acknowledgedFailures ? "the map was full" : null;
            if (doubt is not null)
            {
                _doubtSinceNs = now;
                _acknowledgedFailures = state.Failures;
                if (_foreignOpen)
                {
                    _signer.BlockJoinMap();
                    _foreignOpen = false;
                    return (false, doubt);
                }

                return null;
            }

            if (_foreignOpen || now - _doubtSinceNs < (long)(HandshakeAge.TotalMilliseconds * 1_000_000))
            {
                return null;
            }

            // Every held connection's token, stored again (one whose SYN/ACK was missed is held by now): then the map is whole.
            foreach (uint token in held.ToArray())
            {
                if (_signer.AddJoinToken(token) != 0)
                {
                    _doubtSinceNs = now;
                    return null;
                }
            }

            _signer.AcknowledgeJoinMap(state.Failures);
            _foreignOpen = true;
            return (true, "nothing missed for " + HandshakeAge.TotalSeconds + " s");
        }
    }
}
