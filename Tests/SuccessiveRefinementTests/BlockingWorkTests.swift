import Foundation
import Testing
@testable import SRRoleSupport

/// The kernel thread's scheduling, read back from the kernel (Linux) on the thread itself.
@Suite struct BlockingWorkTests {
    @Test func runsOnItsOwnThreadAtTheRequestedNiceness() async throws {
        // A process already running at a higher niceness cannot go lower without privileges.
        let inherited = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        let work = BlockingWork(label: "test.nice", priority: .nice(7))
        let (nice, policy) = try await work.run { () -> (Int32, Int32) in
            errno = 0
            return (getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0), sched_getscheduler(0))
        }
        #expect(nice == max(7, inherited))
        #expect(policy == 0)   // SCHED_OTHER
    }

    @Test func idleUsesTheIdleSchedulingClass() async throws {
        let work = BlockingWork(label: "test.idle", priority: .idle)
        let policy = try await work.run { sched_getscheduler(0) }
        #expect(policy == 5)   // SCHED_IDLE
    }

    @Test func rethrowsTheBodysError() async {
        struct Boom: Error {}
        let work = BlockingWork(label: "test.throw")
        await #expect(throws: Boom.self) { try await work.run { throw Boom() } }
    }
}
