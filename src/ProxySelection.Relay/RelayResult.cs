using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>Why a relayed connection ended. The first reason recorded wins.</summary>
public enum CloseReason
{
    /// <summary>Still open (only seen on a live connection).</summary>
    None = 0,

    /// <summary>Both sides finished with FIN; every byte was relayed.</summary>
    Completed,

    /// <summary>The client reset its leg (or its leg failed so that a write saw EPIPE/ECONNRESET).</summary>
    ClientReset,

    /// <summary>The server reset the upstream leg.</summary>
    UpstreamReset,

    /// <summary>No byte moved either way for the idle timeout.</summary>
    IdleTimeout,

    /// <summary>The relay itself aborted the connection (shutdown, operator request).</summary>
    Aborted,

    /// <summary>Refused at the connection limit: the client leg was reset right after accept.</summary>
    Refused,

    /// <summary>The upstream connect failed (see <see cref="RelayResult.ConnectStatus"/>); the client leg was reset.</summary>
    UpstreamConnectFailed,

    /// <summary>An unexpected socket error (see <see cref="RelayResult.Error"/>); both legs were reset.</summary>
    Error,
}

/// <summary>How a socket operation failed, sorted the way the relay acts on it.</summary>
public enum SocketFailure
{
    /// <summary>The peer reset the connection (ECONNRESET, EPIPE): propagate the reset.</summary>
    Reset,

    /// <summary>The relay closed the socket itself (disposed, operation aborted): nothing to propagate.</summary>
    Abort,

    /// <summary>Anything else.</summary>
    Unexpected,
}

/// <summary>The outcome of one relayed connection, returned as a value (never thrown).</summary>
public sealed record RelayResult
{
    public required IPEndPoint? Client { get; init; }

    /// <summary>Where the client meant to go: the accepted socket's local endpoint under TPROXY.</summary>
    public required IPEndPoint? OriginalDestination { get; init; }

    public IPEndPoint? Upstream { get; init; }
    public required CloseReason Reason { get; init; }

    /// <summary>The socket error behind <see cref="CloseReason.Error"/> or a reset, else Success.</summary>
    public SocketError Error { get; init; }

    public UpstreamConnectStatus ConnectStatus { get; init; }

    /// <summary>How long the upstream connect took, to its result; null when the relay did not connect the upstream leg
    /// itself (<see cref="RelayServer.RelayAsync"/>: an adopted probe, a front's own connect).</summary>
    public TimeSpan? ConnectTime { get; init; }

    public long BytesClientToUpstream { get; init; }
    public long BytesUpstreamToClient { get; init; }
    public TimeSpan Duration { get; init; }

    /// <summary>The client leg's MPTCP state just before it was closed: status and MPTCP_INFO, no subflow list.</summary>
    public MptcpSnapshot ClientMptcp { get; init; } = MptcpSnapshot.NotMptcp;

    /// <summary>The upstream leg's MPTCP state just before it was closed: status and MPTCP_INFO, no subflow list.</summary>
    public MptcpSnapshot UpstreamMptcp { get; init; } = MptcpSnapshot.NotMptcp;

    /// <summary>The highest subflow count seen on the client leg during the connection.</summary>
    public int ClientMaxSubflows { get; init; }

    /// <summary>The highest subflow count seen on the upstream leg (MPTCP in the upgrade role).</summary>
    public int UpstreamMaxSubflows { get; init; }
}
