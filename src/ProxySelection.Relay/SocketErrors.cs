using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>Sorts socket failures into what the relay does about them.</summary>
public static class SocketErrors
{
    public static SocketFailure Classify(Exception exception, out SocketError error)
    {
        ArgumentNullException.ThrowIfNull(exception);
        switch (exception)
        {
            case SocketException e:
                error = e.SocketErrorCode;
                return e.SocketErrorCode switch
                {
                    // EPIPE surfaces as Shutdown; ECONNABORTED is the kernel giving up on the connection
                    // (e.g. an MPTCP fast close): the peer's connection is gone either way.
                    SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted => SocketFailure.Reset,
                    SocketError.OperationAborted or SocketError.Interrupted => SocketFailure.Abort,
                    _ => SocketFailure.Unexpected,
                };
            case ObjectDisposedException or OperationCanceledException:
                error = SocketError.OperationAborted;
                return SocketFailure.Abort;
            case IOException { InnerException: SocketException inner }:
                return Classify(inner, out error);
            default:
                error = SocketError.SocketError;
                return SocketFailure.Unexpected;
        }
    }
}
